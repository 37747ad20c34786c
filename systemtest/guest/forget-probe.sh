#!/bin/sh
# Is the exporter's RemoveDevice before each scan still needed on this release's BlueZ? Three
# virtual sensors (BTHome v2, encrypted BTHome v2, pvvx custom) and 15 passive scans of 5 s every
# 6 s, without and with RemoveDevice (guest/forget-probe.py says how).
# Run: systemtest/guest-run.py [--release trixie] systemtest/guest/forget-probe.sh
set -eu
sh /opt/systemtest/bt-setup.sh 4 >/dev/null
key=231d39c1d7cc1ab1aee224cd096db932
systemd-run --quiet --unit=vsensors --collect python3 /opt/systemtest/vsensor.py run \
    --sensor hci1:bthome --sensor "hci2:bthome-enc:$key" --sensor hci3:pvvx
sleep 3
. /etc/os-release
echo "$PRETTY_NAME, kernel $(uname -r), BlueZ $(dpkg-query -W -f '${Version}' bluez), bleak $(dpkg-query -W -f '${Version}' python3-bleak)"
python3 /opt/systemtest/forget-probe.py --sensor hci1:bthome --sensor hci2:bthome-enc --sensor hci3:pvvx
systemctl stop vsensors
