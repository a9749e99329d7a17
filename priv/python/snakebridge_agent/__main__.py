"""Entry point: `python -m snakebridge_agent --socket PATH --token-file PATH [--threads N]`."""

import sys

from snakebridge_agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
