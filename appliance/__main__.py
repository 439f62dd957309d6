import sys

from appliance.cli import main

if __name__ == "__main__":  # not when a spawned worker process (transcription) imports it
    sys.exit(main())
