"""References: what a connector or a loss argument reads, and their one resolver."""
from dataclasses import dataclass
from typing import Any, Callable, Collection, Dict, List, Mapping, Optional, Union

from torch import nn

from .errors import DistillerConfigError


@dataclass(frozen=True)
class RecordRef:
    """The record ``record`` of the net named ``net`` (``'student'``, a teacher)."""
    net: str
    record: str

    def __str__(self) -> str:
        return f'{self.net}.{self.record}'


@dataclass(frozen=True)
class ConnectorRef:
    """The output of the connector ``name``."""
    name: str

    def __str__(self) -> str:
        return self.name


#: A reference, or a list of them (the argument then receives the list of values).
Reference = Union[RecordRef, ConnectorRef, List[Union[RecordRef, ConnectorRef]]]


def describe(ref: Reference) -> str:
    """The reference as a config would write it."""
    if isinstance(ref, list):
        return '[' + ', '.join(describe(r) for r in ref) + ']'
    return str(ref)


def parse_reference(text: Any, arg: str, where: str, records: Mapping[str, Collection[str]],
                    connectors: Collection[str]) -> Reference:
    """Turn a config's reference into a typed one, or say what is wrong.

    * ``'name'``: the connector ``name`` if there is one, else the record
      ``name`` of the net the argument is named after (``student=``,
      ``teacher=``);
    * ``'net.name'``: that net's record;
    * a list of those: the list of their values.

    Args:
        text: The reference in the config.
        arg: The argument it feeds (``student``, ``teacher``, ``input``...).
        where: What is being configured, for messages.
        records: Net name -> names of its records.
        connectors: Connector names.
    """
    if isinstance(text, (list, tuple)):
        if not text:
            raise DistillerConfigError(f'{where}: argument {arg!r} is an empty list; '
                                       'name at least one record or connector.')
        return [parse_reference(t, arg, where, records, connectors) for t in text]
    if not isinstance(text, str):
        raise DistillerConfigError(f'{where}: argument {arg!r} must name a record or '
                                   f'connector (a string); got {text!r}.')
    if text in connectors:
        return ConnectorRef(text)
    if '.' in text:
        net, record = text.split('.', 1)
        if net not in records:
            raise DistillerConfigError(
                f'{where}: {arg}={text!r} names net {net!r}; nets here: {sorted(records)}.')
    else:
        net, record = arg, text
        if net not in records:
            raise DistillerConfigError(
                f'{where}: {arg}={text!r} does not say whose record it is; write '
                f'one of {[f"{n}.{text}" for n in records]} or a connector name.')
    if record not in records[net]:
        raise DistillerConfigError(
            f'{where}: {arg}={text!r}: {net} has no record {record!r}. Records of '
            f'{net}: {sorted(records[net])}; connectors: {sorted(connectors)}.'
            ' Add it under `recorders` (both nets) or `student_recorders`/'
            '`teacher_recorders`.')
    return RecordRef(net, record)


class Resolver:
    """Values of references for one forward: records read once, connectors run once.

    The same resolver serves the build-time check (on the dry run's
    records) and every training step.

    Args:
        read_record: Returns the value of a :class:`RecordRef`.
        connectors: Connector modules by name (may still be filling up while
            a distiller builds them in order).
        connector_inputs: The reference each connector reads.
        read_output: Given a connector and its output, the value that
            references to it read (default: the output as it is).
    """

    def __init__(self, read_record: Callable[[RecordRef], Any],
                 connectors: Mapping[str, nn.Module], connector_inputs: Mapping[str, Reference],
                 read_output: Optional[Callable[[nn.Module, Any], Any]] = None):
        self.read_record = read_record
        self.connectors = connectors
        self.connector_inputs = connector_inputs
        self.read_output = read_output or (lambda _connector, output: output)
        self._cache: Dict[Union[RecordRef, ConnectorRef], Any] = {}

    def __call__(self, ref: Reference) -> Any:
        if isinstance(ref, list):
            return [self(r) for r in ref]
        if ref not in self._cache:
            if isinstance(ref, ConnectorRef):
                if ref.name not in self.connectors:
                    raise DistillerConfigError(
                        f'connector {ref.name!r} is used before it is defined; list connectors '
                        'in the order they feed each other.')
                connector = self.connectors[ref.name]
                self._cache[ref] = self.read_output(
                    connector, connector(self(self.connector_inputs[ref.name])))
            else:
                self._cache[ref] = self.read_record(ref)
        return self._cache[ref]
