#!/usr/bin/python3
"""One more virtual controller on btvirt's radio that can be removed and made again (system-test guest).

`btvirt -lN` serves its N controllers from one process: stopping it removes them all, and nothing
removes only one. But btvirt's `-s` server sockets hand a connected client a controller of the same
virtual radio (bookworm's emulator/server.c: a btdev of type BR/EDR/LE, without the extended
advertising and scanning commands of the `-l` ones; the emulator sends it every other controller's
adverts all the same), so a controller in the kernel that this process relays to such a socket hears
what the others hear, and goes away, as an unplugged USB dongle does, when this process ends (its
/dev/vhci closed).

  vhci-relay.py [--socket /tmp/bt-server-bredrle] [--index-file FILE]
      open /dev/vhci (the kernel's next free hciN), relay H4 packets both ways until SIGTERM; the
      new hciN is printed and written to FILE
  vhci-relay.py --hold [--socket ...]
      connect to the socket only: btvirt keeps a controller slot for us, no hciN; the next relay's
      controller then gets another slot, so another address (btvirt's address is made of its slot)

btvirt (5.66) makes a controller's address from its slot in its list of controllers and a 16-bit
id (a vhci controller's id is its hci index, a socket client's is 0x42): a relay started again in
the slot it had before gets its address back, on whatever hciN the kernel gives it.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import struct
import sys

HCI_VENDOR_PKT = 0xFF
HCI_PRIMARY = 0x00
# H4 packet type -> (header length, offset and size of the length field in the header)
H4 = {0x01: (3, 2, 1), 0x02: (4, 2, 2), 0x03: (3, 2, 1), 0x04: (2, 1, 1), 0x05: (4, 2, 2)}


def packets(buf: bytearray) -> list[bytes]:
    """Cut the complete H4 packets off the front of `buf` (a stream from the socket)."""
    out = []
    while buf:
        if buf[0] not in H4:
            raise ValueError(f"unknown H4 packet type 0x{buf[0]:02x}")
        head, at, size = H4[buf[0]]
        if len(buf) < 1 + head:
            break
        length = int.from_bytes(buf[1 + at : 1 + at + size], "little")
        if buf[0] == 0x05:
            length &= 0x3FFF
        if len(buf) < 1 + head + length:
            break
        out.append(bytes(buf[: 1 + head + length]))
        del buf[: 1 + head + length]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--socket", default="/tmp/bt-server-bredrle")
    ap.add_argument("--index-file")
    ap.add_argument("--hold", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(args.socket)
    if args.hold:
        print(f"holding a controller slot on {args.socket}", flush=True)
        while sock.recv(4096):
            pass
        return 0
    vhci = os.open("/dev/vhci", os.O_RDWR)
    os.write(vhci, bytes([HCI_VENDOR_PKT, HCI_PRIMARY]))
    rsp = os.read(vhci, 4)
    if len(rsp) < 4 or rsp[0] != HCI_VENDOR_PKT:
        print(f"unexpected answer from /dev/vhci: {rsp.hex()}", file=sys.stderr)
        return 1
    name = f"hci{struct.unpack_from('<H', rsp, 2)[0]}"
    if args.index_file:
        with open(args.index_file + ".tmp", "w") as f:
            f.write(name + "\n")
        os.replace(args.index_file + ".tmp", args.index_file)
    print(f"{name} relayed to {args.socket}", flush=True)
    buf = bytearray()
    while True:
        ready, _, _ = select.select([vhci, sock], [], [])
        if vhci in ready:
            pkt = os.read(vhci, 4096)
            if not pkt:
                return 0
            sock.sendall(pkt)
        if sock in ready:
            data = sock.recv(65536)
            if not data:
                print("btvirt closed the socket", file=sys.stderr)
                return 1
            buf += data
            for pkt in packets(buf):
                os.write(vhci, pkt)


if __name__ == "__main__":
    sys.exit(main())
