import sys

from ble_exporter.main import main

sys.exit(main())
