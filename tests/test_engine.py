"""The scan engine: address filter, merging of one scan's packets, snapshots, replay and downgrade."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import replace

import pytest

from ble_exporter.devices import Device
from ble_exporter.encoder import encode
from ble_exporter.engine import COUNTER_FORMATS, COUNTER_RESET_BELOW, HISTORY_MAX, RESET_AFTER_SECONDS, ScanEngine
from ble_exporter.parser import Format, Reading, Reason, uuid128

BTHOME = uuid128(0xFCD2)
BTHOME_V1_ENC = uuid128(0x181E)
ENV_SENSING = uuid128(0x181A)
XIAOMI = uuid128(0xFE95)
MAC = "A4:C1:38:AA:BB:CC"
KEY_AA = bytes.fromhex("aa" * 16)

# pvvx issue #740 (fw 5.5, LYWSD03MMC B1.7): data1 and data2 carry the SAME packet id 176.
P3_DATA1 = bytes.fromhex("4000b00151028d0a038d11")  # 81 %, 27.01 °C, 44.93 %
P3_DATA2 = bytes.fromhex("4000b00c200b10001101")  # 2.848 V, switch 0, opening 1
# pvvx atc_mi_format_test.py, MAC A4:C1:38:AA:BB:CC, key aa×16: encrypted BTHome v2, counter 9904 and 9913.
E5 = bytes.fromhex("4195b0efda789dd953b02600009341626f")  # 80 %, 19.20 °C, 62.22 %
E6 = bytes.fromhex("41d46cc8e774b9260000cbd84a40")  # 2.764 V
# pvvx atc_mi_format_test.py: pvvx custom format (0x181A, 15 bytes) for the same MAC.
C1 = bytes.fromhex("ccbbaa38c1a46c07fa13d60a52090f")  # 19.00 °C, 51.14 %, 2.774 V, 82 %
# pvvx atc_mi_format_test.py, same MAC and key: MiBeacon "mi_like_enc" temperature (counter 46068) and
# battery (counter 46061), "mi_like" plaintext temperature and humidity.
MI_TEMP = bytes.fromhex("58585b05f4ccbbaa38c1a413df92a81cb30000acc46fda")  # 19.0 °C
MI_BATT = bytes.fromhex("58585b05edccbbaa38c1a4de6df074b30000f2ef0e53")  # 67 %
MI_PLAIN = bytes.fromhex("50585b051bccbbaa38c1a40d1004be000002")  # 19.0 °C, 51.2 %
# Magalex2x14/LYWSD03MMC-info: the stock firmware's 0x5830 frame (capability 0x08), here from MAC.
MI_CAPABILITY = bytes.fromhex("30585b05bfccbbaa38c1a408")


def engine(*devices: Device, keep_unknown: bool = False) -> ScanEngine:
    e = ScanEngine(devices or (Device(MAC, "kitchen"),), keep_unknown=keep_unknown)
    e.open_window(0.0)
    return e


def test_pvvx_packets_with_the_same_packet_id_are_merged_not_dropped() -> None:
    e = engine()
    e.ingest(MAC, -70, {BTHOME: P3_DATA1}, 1.0)
    e.ingest(MAC, -71, {BTHOME: P3_DATA2}, 2.0)
    (d,) = e.close_window(5.0).devices
    r = d.readings
    assert (r.temperature, r.humidity, r.battery, r.voltage) == (27.01, 44.93, 81, 2.848)
    assert (r.rssi, r.last_seen, r.packets, r.format, d.device.name) == (-71, 2.0, 2, "bthome_v2", "kitchen")
    assert e.counters.adverts_decoded == 2


def test_snapshot_holds_only_devices_heard_in_the_latest_scan() -> None:
    other = Device("A4:C1:38:00:00:01", "attic")
    e = engine(Device(MAC, "kitchen"), other)
    e.ingest(MAC, -70, {ENV_SENSING: C1}, 1.0)
    assert [d.device.name for d in e.close_window(5.0).devices] == ["kitchen"]
    e.open_window(30.0)
    assert e.close_window(35.0).devices == ()
    assert e.snapshot.started == 30.0 and e.snapshot.ended == 35.0
    assert e.counters.scans == 2


def test_snapshot_is_immutable_and_replaced_whole() -> None:
    e = engine()
    e.ingest(MAC, -70, {BTHOME: P3_DATA1}, 1.0)
    first = e.close_window(5.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.devices[0].readings.temperature = 0.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.devices[0].readings = first.devices[0].readings  # type: ignore[misc]
    e.open_window(30.0)
    e.ingest(MAC, -70, {BTHOME: P3_DATA2}, 31.0)
    assert e.snapshot is first  # the open window does not leak into the published snapshot
    second = e.close_window(35.0)
    assert second.devices[0].readings.temperature is None and second.devices[0].readings.voltage == 2.848
    assert first.devices[0].readings.temperature == 27.01


def test_unknown_devices_are_counted_and_dropped_before_parsing() -> None:
    e = engine()
    e.ingest("11:22:33:44:55:66", -50, {BTHOME: b"\x40"}, 1.0)  # would be NotDecodable if parsed
    assert e.counters.adverts_received == 1
    assert e.counters.rejected == {} and e.counters.adverts_decoded == 0
    assert "11:22:33:44:55:66" not in e.live
    assert e.close_window(2.0).devices == ()


def test_keep_unknown_tracks_decodable_neighbours_in_live_state_only() -> None:
    e = engine(keep_unknown=True)
    e.ingest("A4:C1:38:99:99:99", -50, {BTHOME: P3_DATA1}, 1.0)
    assert e.live["A4:C1:38:99:99:99"].readings.temperature == 27.01
    assert e.live["A4:C1:38:99:99:99"].name is None
    assert e.close_window(2.0).devices == ()


def test_other_service_data_is_ignored() -> None:
    e = engine()
    e.ingest(MAC, -70, {uuid128(0x1809): b"\x01\x02", BTHOME: P3_DATA1}, 1.0)  # Health Thermometer
    assert e.counters.adverts_decoded == 1 and e.counters.rejected == {}


def test_undecodable_packets_are_counted_by_reason_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    e = engine()
    with caplog.at_level(logging.WARNING):
        for t in range(3):
            e.ingest(MAC, -70, {BTHOME: bytes.fromhex("4002ca")}, float(t))  # temperature cut short
        e.ingest(MAC, -70, {BTHOME: bytes.fromhex("40feca09")}, 4.0)  # bthome-ble test_bthome_wrong_object_id
    assert e.counters.rejected == {"truncated": 3, "unknown_object": 1}
    assert len([r for r in caplog.records if MAC in r.getMessage()]) == 2  # once per device and reason


def test_encrypted_packets_decode_with_the_bindkey() -> None:
    e = engine(Device(MAC, "shed", KEY_AA))
    e.ingest(MAC, -60, {BTHOME: E5}, 1.0)
    e.ingest(MAC, -60, {BTHOME: E6}, 2.0)
    (d,) = e.close_window(5.0).devices
    r = d.readings
    assert (r.temperature, r.humidity, r.battery, r.voltage, r.encrypted) == (19.2, 62.22, 80, 2.764, True)


def test_encrypted_packet_without_bindkey_is_rejected_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    e = engine()
    with caplog.at_level(logging.WARNING):
        e.ingest(MAC, -60, {BTHOME: E5}, 1.0)
        e.ingest(MAC, -60, {BTHOME: E6}, 2.0)
    assert e.counters.rejected == {"encrypted_no_key": 2}
    (record,) = [r for r in caplog.records if MAC in r.getMessage()]
    assert "bindkey" in record.getMessage()


def test_wrong_bindkey_is_rejected_with_a_hint_and_the_key_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
    e = engine(Device(MAC, "shed", wrong))
    with caplog.at_level(logging.DEBUG):
        e.ingest(MAC, -60, {BTHOME: E5}, 1.0)
        e.ingest(MAC, -60, {BTHOME: E5}, 2.0)
    assert e.counters.rejected == {"decrypt_failed": 2}
    text = caplog.text
    assert "probably wrong" in text
    assert wrong.hex() not in text.lower() and KEY_AA.hex() not in text.lower()


def test_plaintext_from_a_device_with_a_bindkey_is_a_downgrade() -> None:
    e = engine(Device(MAC, "shed", KEY_AA))
    e.ingest(MAC, -60, {BTHOME: P3_DATA1}, 1.0)
    assert e.counters.rejected == {"downgrade": 1}
    assert e.close_window(2.0).devices == ()


def test_replayed_counter_is_rejected() -> None:
    e = engine(Device(MAC, "shed", KEY_AA))
    e.ingest(MAC, -60, {BTHOME: E6}, 1.0)  # counter 9913
    e.ingest(MAC, -60, {BTHOME: E5}, 3.0)  # an older counter (9904)
    assert e.counters.rejected == {"replay": 1}
    assert e.counters.adverts_decoded == 1


def _encrypted(counter: int, fmt: Format = Format.BTHOME_V2, temperature: float = 20.0) -> bytes:
    reading = Reading(format=fmt, encrypted=True, temperature=temperature)
    _, payload = encode(reading, MAC, KEY_AA, counter)
    return payload


COUNTER_UUIDS = {Format.BTHOME_V2: BTHOME, Format.BTHOME_V1: BTHOME_V1_ENC, Format.MIJIA: XIAOMI}


@pytest.mark.parametrize("fmt", sorted(COUNTER_FORMATS))
def test_the_same_counter_again_is_the_same_advert_reported_again(fmt: Format) -> None:
    """BlueZ reports an accepted advert again (at the next scan, once the exporter made it forget the
    sensor; on an RSSI change); pvvx sends each encrypted MiBeacon frame for a whole measurement. The
    same counter is a sighting with the same values, neither a new reading nor a replay; a lower
    counter is a replay."""
    uuid = COUNTER_UUIDS[fmt]
    e = engine(Device(MAC, "shed", KEY_AA))
    e.ingest(MAC, -60, {uuid: _encrypted(5000, fmt, 20.5)}, 1.0)
    first = e.close_window(5.0)
    e.open_window(30.0)
    e.ingest(MAC, -71, {uuid: _encrypted(5000, fmt, 20.5)}, 31.0)  # re-reported in the next scan
    (d,) = e.close_window(35.0).devices
    assert (d.readings.temperature, d.readings.rssi, d.readings.last_seen) == (20.5, -71, 31.0)
    assert first.devices[0].readings.temperature == 20.5
    e.open_window(60.0)
    e.ingest(MAC, -60, {uuid: _encrypted(4999, fmt, 3.0)}, 61.0)  # lower: a replay
    e.ingest(MAC, -60, {uuid: _encrypted(5001, fmt, 21.0)}, 62.0)
    e.ingest(MAC, -60, {uuid: _encrypted(4998, fmt, 3.0)}, 63.0)  # below the last accepted now
    (d,) = e.close_window(65.0).devices
    assert d.readings.temperature == 21.0
    assert e.counters.rejected == {"replay": 2} and e.counters.adverts_decoded == 3


@pytest.mark.parametrize("fmt", sorted(COUNTER_FORMATS))
def test_a_frame_heard_on_two_adapters_is_one_frame_and_no_replay(fmt: Format) -> None:
    """A second adapter may report a frame just after the first reported the next one: that late copy
    is neither a replay nor a new reading, and the frame counts once."""
    uuid = COUNTER_UUIDS[fmt]
    e = ScanEngine([Device(MAC, "shed", KEY_AA)], adapters=("hci0", "hci1"))
    e.open_window(0.0)
    e.ingest(MAC, -60, {uuid: _encrypted(5000, fmt, 20.5)}, 1.0, "hci0")
    e.ingest(MAC, -75, {uuid: _encrypted(5000, fmt, 20.5)}, 1.0, "hci1")
    e.ingest(MAC, -61, {uuid: _encrypted(5001, fmt, 21.0)}, 11.0, "hci0")
    e.ingest(MAC, -74, {uuid: _encrypted(5000, fmt, 20.5)}, 11.1, "hci1")  # late
    (d,) = e.close_window(12.0).devices
    assert d.readings.temperature == 21.0 and e.counters.rejected == {}
    assert e.counters.adverts_decoded == 3
    assert (e.reception[MAC].frames, e.reception[MAC].restarts) == (2, 0)
    assert dict(d.adapters) == {"hci0": -61, "hci1": -75} and d.readings.rssi == -61


def test_a_repeated_counter_does_not_move_the_reset_clock() -> None:
    """Re-reports of the last advert do not renew its acceptance time, so an old counter after an hour
    without a new one is still taken as a reset."""
    e = engine(Device(MAC, "shed", KEY_AA))
    e.ingest(MAC, -60, {BTHOME: _encrypted(50_000)}, 1.0)
    e.ingest(MAC, -60, {BTHOME: _encrypted(50_000)}, RESET_AFTER_SECONDS)
    e.ingest(MAC, -60, {BTHOME: _encrypted(COUNTER_RESET_BELOW + 10)}, RESET_AFTER_SECONDS + 2)
    assert e.counters.rejected == {} and e.counters.adverts_decoded == 3


def test_counter_reset_after_a_battery_change_is_accepted() -> None:
    e = engine(Device(MAC, "shed", KEY_AA))
    e.ingest(MAC, -60, {BTHOME: _encrypted(50_000)}, 1.0)
    e.ingest(MAC, -60, {BTHOME: _encrypted(3)}, 2.0)  # restarted near zero
    e.ingest(MAC, -60, {BTHOME: _encrypted(4)}, 3.0)
    assert e.counters.rejected == {} and e.counters.adverts_decoded == 3


def test_counter_going_back_is_accepted_after_a_long_silence() -> None:
    e = engine(Device(MAC, "shed", KEY_AA))
    e.ingest(MAC, -60, {BTHOME: _encrypted(50_000)}, 1.0)
    e.ingest(MAC, -60, {BTHOME: _encrypted(COUNTER_RESET_BELOW + 10)}, 2.0)
    assert e.counters.rejected == {"replay": 1}
    e.ingest(MAC, -60, {BTHOME: _encrypted(COUNTER_RESET_BELOW + 10)}, 2.0 + RESET_AFTER_SECONDS + 1)
    assert e.counters.adverts_decoded == 2


def test_8_bit_counters_of_encrypted_pvvx_custom_are_not_replay_checked() -> None:
    # The pvvx custom counter counts measurements (8 bits) and repeats while a measurement is re-sent.
    e = engine(Device(MAC, "shed", KEY_AA))
    reading = Reading(format=Format.PVVX, encrypted=True, temperature=20.0, humidity=50.0, battery=90, packet_id=200)
    for counter in (200, 200, 201, 3):
        _, payload = encode(replace(reading, packet_id=counter), MAC, KEY_AA, counter)
        e.ingest(MAC, -60, {ENV_SENSING: payload}, float(counter))
    assert e.counters.rejected == {} and e.counters.adverts_decoded == 4


def test_encrypted_mibeacon_values_from_separate_adverts_merge_in_one_scan() -> None:
    e = engine(Device(MAC, "shed", KEY_AA))
    e.ingest(MAC, -60, {XIAOMI: MI_BATT}, 1.0)  # counter 46061
    e.ingest(MAC, -61, {XIAOMI: MI_TEMP}, 2.0)  # counter 46068
    (d,) = e.close_window(5.0).devices
    r = d.readings
    assert (r.temperature, r.humidity, r.battery, r.voltage) == (19.0, None, 67, None)
    assert (r.format, r.encrypted, r.packets) == ("mijia", True, 2)
    e.open_window(30.0)
    e.ingest(MAC, -60, {XIAOMI: MI_BATT}, 31.0)  # 46061: the counter before the last, a late copy: ignored
    assert e.counters.rejected == {} and e.counters.adverts_decoded == 2
    assert e.close_window(35.0).devices == ()


def test_plaintext_mibeacon_from_a_device_with_a_bindkey_is_a_downgrade() -> None:
    e = engine(Device(MAC, "shed", KEY_AA))
    e.ingest(MAC, -60, {XIAOMI: MI_PLAIN}, 1.0)
    assert e.counters.rejected == {"downgrade": 1} and e.close_window(2.0).devices == ()


@pytest.mark.parametrize("bindkey", [None, KEY_AA])
def test_a_mibeacon_frame_without_objects_is_neither_a_sighting_nor_a_rejection(bindkey: bytes | None) -> None:
    e = engine(Device(MAC, "shed", bindkey), keep_unknown=True)
    e.ingest(MAC, -60, {XIAOMI: MI_CAPABILITY}, 1.0)
    e.ingest("A4:C1:38:99:99:99", -60, {XIAOMI: bytes.fromhex("30585b05bf999999") + bytes.fromhex("38c1a408")}, 1.0)
    assert e.counters.rejected == {} and e.counters.adverts_decoded == 0 and e.counters.adverts_received == 2
    assert e.close_window(2.0).devices == ()
    assert e.live[MAC].readings.packets == 0 and "A4:C1:38:99:99:99" not in e.live


def test_live_state_updates_per_advert_with_a_temperature_history() -> None:
    e = engine()
    e.ingest(MAC, -70, {BTHOME: P3_DATA1}, 1.0)
    e.ingest(MAC, -72, {BTHOME: P3_DATA2}, 2.0)
    live = e.live[MAC]
    r = live.readings
    assert (r.temperature, r.voltage, r.rssi, r.packets, r.last_seen) == (
        27.01,
        2.848,
        -72,
        2,
        2.0,
    )
    assert live.history == [(1.0, 27.01)]
    assert e.close_window(3.0).devices[0].readings == r  # the window and the live state merge alike


def test_history_stays_bounded() -> None:
    e = engine()
    for t in range(10_000):
        e.ingest(MAC, -70, {BTHOME: P3_DATA1}, float(t))
    history = e.live[MAC].history
    assert len(history) < 700
    assert history[-1][0] == 9999.0 and history[0][0] >= 9999 - 700


def test_history_stays_bounded_in_entries_whatever_the_advert_rate() -> None:
    # A sensor advertising far faster than 2.5 s (or someone spoofing it) must not grow the history
    # for 600 s: 5,000 adverts within one second keep at most HISTORY_MAX entries.
    e = engine()
    for i in range(5_000):
        e.ingest(MAC, -70, {BTHOME: P3_DATA1}, 1.0 + i / 5_000)
    history = e.live[MAC].history
    assert 0.75 * HISTORY_MAX <= len(history) <= HISTORY_MAX + 1
    assert history[-1][0] == 1.0 + 4_999 / 5_000


def test_adverts_in_window_counts_every_device() -> None:
    e = engine()
    e.ingest("11:22:33:44:55:66", -50, {}, 1.0)
    e.ingest(MAC, -50, {BTHOME: P3_DATA1}, 1.0)
    assert e.adverts_in_window == 2
    e.close_window(2.0)
    e.open_window(3.0)
    assert e.adverts_in_window == 0


def test_a_reload_keeps_the_state_of_devices_that_stay() -> None:
    attic, cellar = Device("A4:C1:38:00:00:01", "attic"), Device("A4:C1:38:00:00:02", "cellar")
    e = engine(Device(MAC, "kitchen"), attic)
    e.ingest(MAC, -70, {BTHOME: P3_DATA1}, 1.0)
    e.ingest(attic.mac, -70, {BTHOME: P3_DATA1}, 1.5)
    e.close_window(5.0)
    e.set_devices((Device(MAC, "cuisine"), cellar))  # kitchen renamed, attic removed, cellar added
    assert [(d.device.name, d.readings.temperature) for d in e.snapshot.devices] == [("cuisine", 27.01)]
    assert e.live[MAC].name == "cuisine" and e.live[MAC].readings.packets == 1 and e.live[MAC].history
    assert attic.mac not in e.live and e.live[cellar.mac].readings.packets == 0
    assert e.counters.adverts_decoded == 2  # counters go on
    e.open_window(30.0)
    e.ingest(attic.mac, -70, {BTHOME: P3_DATA1}, 31.0)  # no longer configured: dropped
    e.ingest(cellar.mac, -70, {BTHOME: P3_DATA1}, 31.0)
    assert [d.device.name for d in e.close_window(35.0).devices] == ["cellar"]


def test_a_new_bindkey_starts_a_new_encryption_counter() -> None:
    e = engine(Device(MAC, "shed", KEY_AA))
    e.ingest(MAC, -60, {BTHOME: E6}, 1.0)  # counter 9913
    e.ingest(MAC, -60, {BTHOME: E5}, 2.0)  # 9904: a replay
    assert e.counters.rejected == {Reason.REPLAY: 1}
    e.set_devices((Device(MAC, "shed", bytes(KEY_AA)),))  # the same key: the counter stays
    e.ingest(MAC, -60, {BTHOME: E5}, 3.0)
    assert e.counters.rejected == {Reason.REPLAY: 2}
    e.set_devices((Device(MAC, "shed", bytes.fromhex("bb" * 16)),))
    e.set_devices((Device(MAC, "shed", KEY_AA),))  # a new key (here, back again): a new counter
    e.ingest(MAC, -60, {BTHOME: E5}, 4.0)
    assert e.counters.rejected == {Reason.REPLAY: 2} and e.counters.adverts_decoded == 2
