"""A fake BlueZ on a private D-Bus, for driving the REAL bleak BlueZ backend in tests.

``BluezMock`` starts, as subprocesses:

* a private ``dbus-daemon`` listening on a unix socket in a temporary directory, and
* ``/usr/bin/python3 -m dbusmock --system --template <ours>``: python-dbusmock's ``bluez5``
  template, extended by a small template (``_TEMPLATE_SOURCE`` below) that adds adapters and
  devices with correctly typed properties (the stock ``AddDevice`` types ``ServiceData`` wrongly,
  and its ``UpdateProperties`` cannot send dict properties).

Point bleak at it by setting ``DBUS_SYSTEM_BUS_ADDRESS`` to ``bus_address`` before bleak
connects (``env()`` gives a ready environment for subprocesses). The test process itself never
imports ``dbus``: the mock is driven with ``dbus-send`` calls, so this works under Debian's
python3 and under a PyPI venv alike.

Needs the Debian packages ``dbus`` (dbus-daemon, dbus-send) and ``python3-dbusmock``.

Differences from a real bluetoothd worth knowing:

* No per-client discovery sessions: ``StartDiscovery`` always succeeds on a powered adapter,
  ``StopDiscovery`` fails with ``org.bluez.Error.Failed`` ("No discovery started") only when the
  adapter is not discovering. Both fail with ``org.bluez.Error.NotReady`` on a powered-off
  adapter, as in BlueZ.
* Adverts are delivered whether or not anyone is scanning, and passive-mode monitors do not
  filter on their or_patterns.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypedDict

SYSTEM_PYTHON = "/usr/bin/python3"
BUS_ENV = "DBUS_SYSTEM_BUS_ADDRESS"
REQUIRED_DEBIAN_PACKAGES = ("dbus", "python3-dbusmock")

_START_TIMEOUT = 10.0
_CALL_TIMEOUT = 5.0
_STOP_TIMEOUT = 5.0

# The dbusmock template. It runs inside the dbusmock process under /usr/bin/python3, which has
# python3-dbus; it is written to the mock's temporary directory at start.
_TEMPLATE_SOURCE = r'''
"""bluez5 template plus correctly typed helpers for ble-exporter's tests."""

import json

import dbus

from dbusmock import OBJECT_MANAGER_IFACE, mockobject
from dbusmock.templates import bluez5 as _bluez5
from dbusmock.templates.bluez5 import *  # noqa: F401,F403  (constants and the stock Mock methods)

HARNESS_IFACE = 'org.bluez.Mock'
ADAPTER_IFACE = 'org.bluez.Adapter1'
DEVICE_IFACE = 'org.bluez.Device1'
MONITOR_MANAGER_IFACE = 'org.bluez.AdvertisementMonitorManager1'


def load(mock, parameters):
    _bluez5.load(mock, parameters)


def _error(name, message):
    return dbus.exceptions.DBusException(message, name=name)


def _adapter(name):
    path = '/org/bluez/' + name
    if path not in mockobject.objects:
        raise _error(HARNESS_IFACE + '.NoSuchAdapter', f'Adapter {name} does not exist.')
    return mockobject.objects[path]


def _changed(obj, interface, changed):
    obj.EmitSignal(dbus.PROPERTIES_IFACE, 'PropertiesChanged', 'sa{sv}as', [
        interface, dbus.Dictionary(changed, signature='sv'), dbus.Array([], signature='s'),
    ])


def _set(obj, interface, changed):
    obj.props[interface].update(changed)
    _changed(obj, interface, changed)


def _bytes(hex_string):
    return dbus.Array([dbus.Byte(b) for b in bytes.fromhex(hex_string)], signature='y', variant_level=1)


def _start_discovery(adapter):
    props = adapter.props[ADAPTER_IFACE]
    if not props['Powered']:
        raise _error('org.bluez.Error.NotReady', 'Resource Not Ready')
    if not props['Discovering']:
        _set(adapter, ADAPTER_IFACE, {'Discovering': dbus.Boolean(True, variant_level=1)})


def _stop_discovery(adapter):
    props = adapter.props[ADAPTER_IFACE]
    if not props['Powered']:
        raise _error('org.bluez.Error.NotReady', 'Resource Not Ready')
    if not props['Discovering']:
        raise _error('org.bluez.Error.Failed', 'No discovery started')
    _set(adapter, ADAPTER_IFACE, {'Discovering': dbus.Boolean(False, variant_level=1)})


_plain_set = mockobject.DBusMockObject.Set


@dbus.service.method(dbus.PROPERTIES_IFACE, in_signature='ssv', out_signature='')
def _mock_set(self, interface_name, property_name, value):
    """Properties.Set as a client (bluetoothctl, the exporter) calls it; for Adapter1.Powered also what
    BlueZ does: powering off ends discovery, and a deaf adapter hears again once powered off and on."""
    if interface_name == ADAPTER_IFACE and property_name == 'Powered':
        powered = bool(value)
        changed = {'Powered': dbus.Boolean(powered, variant_level=1)}
        if not powered and self.props[ADAPTER_IFACE]['Discovering']:
            changed['Discovering'] = dbus.Boolean(False, variant_level=1)
        if not powered:
            self.power_offs = getattr(self, 'power_offs', 0) + 1
        elif getattr(self, 'power_offs', 0) > getattr(self, 'power_ons', 0):
            self.power_ons = getattr(self, 'power_ons', 0) + 1
            self.deaf = False
        _set(self, ADAPTER_IFACE, changed)
        return
    _plain_set(self, interface_name, property_name, value)


# dbus-python finds a method by name along the class's MRO at each call, so this replaces Set for
# every mock object (the adapters are plain DBusMockObjects).
mockobject.DBusMockObject.Set = _mock_set


def _set_discovery_filter(adapter, discovery_filter):
    if not adapter.props[ADAPTER_IFACE]['Powered']:
        raise _error('org.bluez.Error.NotReady', 'Resource Not Ready')
    adapter.discovery_filter = discovery_filter


def _register_monitor(adapter, path):
    if path in adapter.monitors:
        raise _error('org.bluez.Error.AlreadyExists', 'Already Exists')
    adapter.monitors.append(path)


def _unregister_monitor(adapter, path):
    if path not in adapter.monitors:
        raise _error('org.bluez.Error.DoesNotExist', 'Does Not Exist')
    adapter.monitors.remove(path)


@dbus.service.method(HARNESS_IFACE, in_signature='ssbb', out_signature='s')
def AddTestAdapter(self, name, address, powered, passive):
    """Add an adapter the way bleak 0.20 .. 3.x expect it (with Roles; optionally with
    AdvertisementMonitorManager1 so that passive scanning starts)."""
    path = '/org/bluez/' + name
    if path in mockobject.objects:
        raise _error(HARNESS_IFACE + '.AdapterExists', f'Adapter {name} already exists.')
    props = {
        'Address': dbus.String(address, variant_level=1),
        'AddressType': dbus.String('public', variant_level=1),
        'Name': dbus.String('ble-exporter-test', variant_level=1),
        'Alias': dbus.String('ble-exporter-test', variant_level=1),
        'Class': dbus.UInt32(0, variant_level=1),
        'Powered': dbus.Boolean(powered, variant_level=1),
        'Discoverable': dbus.Boolean(False, variant_level=1),
        'DiscoverableTimeout': dbus.UInt32(180, variant_level=1),
        'Pairable': dbus.Boolean(True, variant_level=1),
        'PairableTimeout': dbus.UInt32(0, variant_level=1),
        'Discovering': dbus.Boolean(False, variant_level=1),
        'UUIDs': dbus.Array([], signature='s', variant_level=1),
        'Modalias': dbus.String('usb:v1D6Bp0246d0540', variant_level=1),
        'Roles': dbus.Array(['central', 'peripheral'], signature='s', variant_level=1),
    }
    self.AddObject(path, ADAPTER_IFACE, props, [
        ('StartDiscovery', '', '', _start_discovery),
        ('StopDiscovery', '', '', _stop_discovery),
        ('SetDiscoveryFilter', 'a{sv}', '', _set_discovery_filter),
        ('RemoveDevice', 'o', '', _bluez5.RemoveDevice),
    ])
    adapter = mockobject.objects[path]
    adapter.discovery_filter = {}
    adapter.monitors = []
    adapter.deaf = False
    interfaces = {ADAPTER_IFACE: props}
    if passive:
        monitor_props = {
            'SupportedMonitorTypes': dbus.Array(['or_patterns'], signature='s', variant_level=1),
            'SupportedFeatures': dbus.Array([], signature='s', variant_level=1),
        }
        adapter.AddProperties(MONITOR_MANAGER_IFACE, monitor_props)
        adapter.AddMethods(MONITOR_MANAGER_IFACE, [
            ('RegisterMonitor', 'o', '', _register_monitor),
            ('UnregisterMonitor', 'o', '', _unregister_monitor),
        ])
        interfaces[MONITOR_MANAGER_IFACE] = monitor_props
    mockobject.objects['/'].EmitSignal(OBJECT_MANAGER_IFACE, 'InterfacesAdded', 'oa{sa{sv}}', [
        dbus.ObjectPath(path), interfaces,
    ])
    return path


@dbus.service.method(HARNESS_IFACE, in_signature='sb', out_signature='')
def SetAdapterPowered(self, name, powered):
    """Power an adapter on or off; powering off also ends discovery, as in BlueZ."""
    adapter = _adapter(name)
    changed = {'Powered': dbus.Boolean(powered, variant_level=1)}
    if not powered and adapter.props[ADAPTER_IFACE]['Discovering']:
        changed['Discovering'] = dbus.Boolean(False, variant_level=1)
    _set(adapter, ADAPTER_IFACE, changed)


@dbus.service.method(HARNESS_IFACE, in_signature='s', out_signature='')
def SetAdapterDeaf(self, name):
    """The adapter stops hearing adverts, though it looks fine, until it is powered off and on."""
    _adapter(name).deaf = True


@dbus.service.method(HARNESS_IFACE, in_signature='sss', out_signature='s')
def Advertise(self, adapter_name, address, advert_json):
    """Deliver one advertisement: InterfacesAdded for a new device, else PropertiesChanged; a deaf
    adapter drops it."""
    adapter = _adapter(adapter_name)
    if adapter.deaf:
        return ''

    advert = json.loads(advert_json)
    path = adapter.path + '/dev_' + address.replace(':', '_').upper()
    rssi = dbus.Int16(advert['rssi'], variant_level=1)
    name = advert.get('name')
    service_data = {k: _bytes(v) for k, v in advert.get('service_data', {}).items()}
    manufacturer_data = {
        dbus.UInt16(int(k)): _bytes(v) for k, v in advert.get('manufacturer_data', {}).items()
    }

    if path not in mockobject.objects:
        props = {
            'Address': dbus.String(address, variant_level=1),
            'AddressType': dbus.String(advert.get('address_type', 'public'), variant_level=1),
            'Alias': dbus.String(name or address.replace(':', '-'), variant_level=1),
            'Paired': dbus.Boolean(False, variant_level=1),
            'Bonded': dbus.Boolean(False, variant_level=1),
            'Trusted': dbus.Boolean(False, variant_level=1),
            'Blocked': dbus.Boolean(False, variant_level=1),
            'LegacyPairing': dbus.Boolean(False, variant_level=1),
            'Connected': dbus.Boolean(False, variant_level=1),
            'ServicesResolved': dbus.Boolean(False, variant_level=1),
            'UUIDs': dbus.Array(advert.get('service_uuids', []), signature='s', variant_level=1),
            'Adapter': dbus.ObjectPath(adapter.path, variant_level=1),
            'RSSI': rssi,
        }
        if name is not None:
            props['Name'] = dbus.String(name, variant_level=1)
        if service_data:
            props['ServiceData'] = dbus.Dictionary(service_data, signature='sv', variant_level=1)
        if manufacturer_data:
            props['ManufacturerData'] = dbus.Dictionary(manufacturer_data, signature='qv', variant_level=1)
        self.AddObject(path, DEVICE_IFACE, props, [
            ('Connect', '', '', ''),
            ('Disconnect', '', '', ''),
            ('Pair', '', '', ''),
            ('CancelPairing', '', '', ''),
        ])
        mockobject.objects['/'].EmitSignal(OBJECT_MANAGER_IFACE, 'InterfacesAdded', 'oa{sa{sv}}', [
            dbus.ObjectPath(path), {DEVICE_IFACE: props},
        ])
        return path

    device = mockobject.objects[path]
    current = device.props[DEVICE_IFACE]
    changed = {'RSSI': rssi}
    if name is not None and current.get('Name') != name:
        changed['Name'] = dbus.String(name, variant_level=1)
        changed['Alias'] = dbus.String(name, variant_level=1)
    if service_data:
        # BlueZ keeps the other UUIDs' data and sends the whole merged dict.
        merged = dict(current.get('ServiceData', {}))
        merged.update(service_data)
        changed['ServiceData'] = dbus.Dictionary(merged, signature='sv', variant_level=1)
    if manufacturer_data:
        merged = dict(current.get('ManufacturerData', {}))
        merged.update(manufacturer_data)
        changed['ManufacturerData'] = dbus.Dictionary(merged, signature='qv', variant_level=1)
    _set(device, DEVICE_IFACE, changed)
    return path


@dbus.service.method(HARNESS_IFACE, in_signature='s', out_signature='s')
def AdapterState(self, name):
    """JSON: Powered, Discovering, StartDiscovery calls so far, registered monitor paths."""
    adapter = _adapter(name)
    props = adapter.props[ADAPTER_IFACE]
    return json.dumps({
        'powered': bool(props['Powered']),
        'discovering': bool(props['Discovering']),
        'discovery_starts': sum(1 for call in adapter.call_log if call[1] == 'StartDiscovery'),
        'removed_devices': [str(call[2][0]) for call in adapter.call_log if call[1] == 'RemoveDevice'],
        'monitors': [str(p) for p in adapter.monitors],
        'power_cycles': getattr(adapter, 'power_ons', 0),
        'deaf': adapter.deaf,
    })
'''


class BluezMockError(RuntimeError):
    """The mock could not be started or driven."""


class BluezMockUnavailable(BluezMockError):
    """A tool the mock needs is not installed."""


@functools.cache
def _has_dbusmock(python: str) -> bool:
    if not Path(python).exists():
        return False
    probe = subprocess.run([python, "-c", "import dbus, dbusmock"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def missing_requirements() -> str | None:
    """Why the mock cannot run here (a message naming the Debian packages), or None."""
    missing: list[str] = []
    for tool in ("dbus-daemon", "dbus-send"):
        if shutil.which(tool) is None:
            missing.append(tool)
    if not _has_dbusmock(SYSTEM_PYTHON):
        missing.append(f"python3-dbus and python3-dbusmock for {SYSTEM_PYTHON}")
    if not missing:
        return None
    return (
        f"the BlueZ mock needs {', '.join(missing)}: "
        f"install the Debian packages {' and '.join(REQUIRED_DEBIAN_PACKAGES)} "
        f"(apt-get install {' '.join(REQUIRED_DEBIAN_PACKAGES)})"
    )


_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Have the kernel SIGTERM the child if the test process dies without cleaning up."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=_STOP_TIMEOUT)


class _AdapterState(TypedDict):
    powered: bool
    discovering: bool
    discovery_starts: int
    removed_devices: list[str]
    monitors: list[str]
    power_cycles: int
    deaf: bool


@dataclass
class _Adapter:
    address: str
    powered: bool


@dataclass
class BluezMock:
    """A private system bus with a fake bluetoothd on it. Use as a context manager.

    ``passive_supported=True`` gives adapters ``org.bluez.AdvertisementMonitorManager1`` so that
    bleak's passive scanning mode starts; otherwise bleak reports passive mode unsupported.
    """

    passive_supported: bool = False
    bus_address: str = field(default="", init=False)
    _tmpdir: Path | None = field(default=None, init=False, repr=False)
    _daemon: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _bluetoothd: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _adapters: dict[str, _Adapter] = field(default_factory=dict, init=False, repr=False)

    # ---- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> BluezMock:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start dbus-daemon and the fake bluetoothd (with no adapters)."""
        reason = missing_requirements()
        if reason is not None:
            raise BluezMockUnavailable(reason)
        try:
            self._start_daemon()
            self.start_bluetoothd()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop both processes (by PID) and remove the temporary directory. Idempotent."""
        _stop(self._bluetoothd)
        self._bluetoothd = None
        _stop(self._daemon)
        self._daemon = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def pids(self) -> list[int]:
        """PIDs of the running dbus-daemon and fake bluetoothd (for leak checks)."""
        return [p.pid for p in (self._daemon, self._bluetoothd) if p is not None and p.poll() is None]

    def env(self) -> dict[str, str]:
        """A copy of os.environ with DBUS_SYSTEM_BUS_ADDRESS pointing at the private bus."""
        return {**os.environ, BUS_ENV: self._require_bus()}

    def _start_daemon(self) -> None:
        tmp_parent = None if len(tempfile.gettempdir()) < 60 else "/tmp"
        self._tmpdir = Path(tempfile.mkdtemp(prefix="bluez-mock-", dir=tmp_parent))
        socket = self._tmpdir / "system_bus_socket"
        config = self._tmpdir / "bus.conf"
        config.write_text(
            '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"\n'
            ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n'
            "<busconfig>\n"
            "  <type>system</type>\n"
            f"  <listen>unix:path={socket}</listen>\n"
            "  <auth>EXTERNAL</auth>\n"
            '  <policy context="default">\n'
            '    <allow user="*"/>\n'
            '    <allow own="*"/>\n'
            '    <allow send_type="*"/>\n'
            '    <allow receive_type="*"/>\n'
            "  </policy>\n"
            "</busconfig>\n",
            encoding="utf-8",
        )
        log = (self._tmpdir / "dbus-daemon.log").open("wb")
        with log:
            self._daemon = subprocess.Popen(
                ["dbus-daemon", f"--config-file={config}", "--print-address=1", "--nofork", "--nopidfile"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (only calls prctl)
            )
        assert self._daemon.stdout is not None
        # dbus-daemon prints its address once it listens; readline() returns "" if it dies.
        line = self._daemon.stdout.readline().decode().strip()
        self._daemon.stdout.close()
        if not line:
            self._daemon.wait(timeout=_STOP_TIMEOUT)
            raise BluezMockError(f"dbus-daemon failed to start: {self._log_tail('dbus-daemon.log')}")
        self.bus_address = line

    # ---- bluetoothd ------------------------------------------------------------------------

    def start_bluetoothd(self) -> None:
        """Start the fake bluetoothd; adapters added before a kill_bluetoothd() come back,
        with their devices forgotten, as after a real bluetoothd restart."""
        if self._bluetoothd is not None and self._bluetoothd.poll() is None:
            raise BluezMockError("bluetoothd mock is already running")
        tmpdir = self._require_tmpdir()
        template = tmpdir / "ble_exporter_bluez_template.py"
        template.write_text(_TEMPLATE_SOURCE, encoding="utf-8")
        log = (tmpdir / "dbusmock.log").open("ab")
        with log:
            self._bluetoothd = subprocess.Popen(
                [
                    SYSTEM_PYTHON,
                    "-m",
                    "dbusmock",
                    "--system",
                    "--template",
                    str(template),
                    "--logfile",
                    str(tmpdir / "dbusmock-calls.log"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.env(),
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (only calls prctl)
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._name_has_owner("org.bluez"):
            if self._bluetoothd.poll() is not None:
                raise BluezMockError(f"dbusmock exited at start: {self._log_tail('dbusmock.log')}")
            if time.monotonic() > deadline:
                raise BluezMockError(f"dbusmock did not claim org.bluez: {self._log_tail('dbusmock.log')}")
            time.sleep(0.05)
        for name, adapter in self._adapters.items():
            self._add_adapter_object(name, adapter)

    def kill_bluetoothd(self) -> None:
        """Kill the fake bluetoothd (SIGKILL, like a crash): org.bluez vanishes from the bus."""
        if self._bluetoothd is None:
            return
        self._bluetoothd.kill()
        self._bluetoothd.wait(timeout=_STOP_TIMEOUT)
        self._bluetoothd = None
        deadline = time.monotonic() + _START_TIMEOUT
        while self._name_has_owner("org.bluez"):
            if time.monotonic() > deadline:
                raise BluezMockError("org.bluez still owned after killing dbusmock")
            time.sleep(0.02)

    # ---- adapters --------------------------------------------------------------------------

    def add_adapter(self, name: str = "hci0", address: str = "00:01:02:03:04:05", powered: bool = True) -> None:
        """Add an org.bluez.Adapter1 (InterfacesAdded), as when a USB dongle is plugged in."""
        adapter = _Adapter(address=address, powered=powered)
        self._add_adapter_object(name, adapter)
        self._adapters[name] = adapter

    def remove_adapter(self, name: str = "hci0") -> None:
        """Remove the adapter and its devices (InterfacesRemoved), as when a dongle is pulled."""
        self._call("RemoveAdapterWithDevices", f"string:{name}")
        self._adapters.pop(name, None)

    def power_off(self, name: str = "hci0") -> None:
        """Powered=False (and Discovering=False if it was on), with PropertiesChanged."""
        self._set_powered(name, False)

    def power_on(self, name: str = "hci0") -> None:
        """Powered=True, with PropertiesChanged. Discovery is not resumed."""
        self._set_powered(name, True)

    def is_discovering(self, adapter: str = "hci0") -> bool:
        return self._adapter_state(adapter)["discovering"]

    def wait_scanning(self, adapter: str = "hci0", timeout: float = 15.0) -> None:
        """Until a client scans on the adapter (discovering, or a passive monitor registered). A test's
        first advert of a new device waits for it: bleak's manager forgets a device whose InterfacesAdded
        arrives right behind the reply to its start-up GetManagedObjects (it clears its table when that
        reply's coroutine resumes; bleak 0.22 to 3.1, the window of hbldh/bleak#996), and the mock, unlike
        BlueZ, which reports devices only while scanning, never adds that device again."""
        deadline = time.monotonic() + timeout
        while True:
            state = self._adapter_state(adapter)
            if state["discovering"] or state["monitors"]:
                return
            if time.monotonic() > deadline:
                raise BluezMockError(f"nothing scans on {adapter} after {timeout:g} s")
            time.sleep(0.05)

    def removed_devices(self, adapter: str = "hci0") -> list[str]:
        """Object paths passed to Adapter1.RemoveDevice, in call order."""
        return self._adapter_state(adapter)["removed_devices"]

    def discovery_starts(self, adapter: str = "hci0") -> int:
        """How many times StartDiscovery was called on the adapter (from dbusmock's call log,
        rejected calls included; the count starts again when the adapter is re-added)."""
        return self._adapter_state(adapter)["discovery_starts"]

    def make_deaf(self, adapter: str = "hci0") -> None:
        """The adapter stops hearing (advertise() delivers nothing) until a client powers it off and on
        through Properties.Set, as a hung controller that a power cycle revives."""
        self._call("SetAdapterDeaf", f"string:{adapter}")

    def power_cycles(self, adapter: str = "hci0") -> int:
        """Completed off-then-on cycles a client made through Properties.Set(Adapter1, Powered)."""
        return self._adapter_state(adapter)["power_cycles"]

    def is_deaf(self, adapter: str = "hci0") -> bool:
        return self._adapter_state(adapter)["deaf"]

    def registered_monitors(self, adapter: str = "hci0") -> list[str]:
        """Object paths registered through AdvertisementMonitorManager1 (passive scanning)."""
        return self._adapter_state(adapter)["monitors"]

    def _add_adapter_object(self, name: str, adapter: _Adapter) -> None:
        self._call(
            "AddTestAdapter",
            f"string:{name}",
            f"string:{adapter.address}",
            f"boolean:{str(adapter.powered).lower()}",
            f"boolean:{str(self.passive_supported).lower()}",
        )

    def _set_powered(self, name: str, powered: bool) -> None:
        self._call("SetAdapterPowered", f"string:{name}", f"boolean:{str(powered).lower()}")
        self._adapters[name].powered = powered

    def _adapter_state(self, name: str) -> _AdapterState:
        state: _AdapterState = json.loads(self._call("AdapterState", f"string:{name}"))
        return state

    # ---- devices ---------------------------------------------------------------------------

    def advertise(
        self,
        address: str,
        service_data: Mapping[str, bytes],
        rssi: int = -60,
        name: str | None = None,
        *,
        adapter: str = "hci0",
        manufacturer_data: Mapping[int, bytes] | None = None,
    ) -> None:
        """Deliver one advertisement from ``address`` as BlueZ reports it.

        The first advert of an address adds its org.bluez.Device1 object (InterfacesAdded) with
        Address, AddressType, Alias, RSSI (n), ServiceData (a{sv} of ay) and, if given, Name and
        ManufacturerData (a{qv} of ay); later ones send PropertiesChanged with RSSI and the
        merged ServiceData (and Name/ManufacturerData when given).
        """
        advert = {
            "rssi": rssi,
            "name": name,
            "service_data": {uuid: bytes(data).hex() for uuid, data in service_data.items()},
            "manufacturer_data": {str(k): bytes(v).hex() for k, v in (manufacturer_data or {}).items()},
        }
        self._call("Advertise", f"string:{adapter}", f"string:{address}", f"string:{json.dumps(advert)}")

    # ---- plumbing --------------------------------------------------------------------------

    def _require_tmpdir(self) -> Path:
        if self._tmpdir is None or self._daemon is None:
            raise BluezMockError("BluezMock is not started")
        return self._tmpdir

    def _require_bus(self) -> str:
        if not self.bus_address:
            raise BluezMockError("BluezMock is not started")
        return self.bus_address

    def _log_tail(self, name: str) -> str:
        if self._tmpdir is None:
            return ""
        try:
            return (self._tmpdir / name).read_text(encoding="utf-8", errors="replace")[-2000:]
        except OSError:
            return ""

    def _dbus_send(self, dest: str, path: str, method: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "dbus-send",
                f"--bus={self._require_bus()}",
                "--print-reply=literal",
                f"--reply-timeout={int(_CALL_TIMEOUT * 1000)}",
                f"--dest={dest}",
                path,
                method,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=_CALL_TIMEOUT + 5,
            check=False,
        )

    def _name_has_owner(self, name: str) -> bool:
        result = self._dbus_send(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            f"string:{name}",
        )
        if result.returncode != 0:
            raise BluezMockError(f"NameHasOwner failed: {result.stderr.strip()}")
        return result.stdout.split()[-1] == "true"

    def _call(self, method: str, *args: str) -> str:
        """Call org.bluez.Mock.<method> on the mock's root object; return the literal reply."""
        if self._bluetoothd is None or self._bluetoothd.poll() is not None:
            raise BluezMockError(f"cannot call {method}: the bluetoothd mock is not running")
        result = self._dbus_send("org.bluez", "/", f"org.bluez.Mock.{method}", *args)
        if result.returncode != 0:
            raise BluezMockError(f"org.bluez.Mock.{method}{args} failed: {result.stderr.strip()}")
        return result.stdout.strip()
