"""Container health check: exit 0 when the node's /health answers 200, else 1.

Reads the same settings as the node (IVCONTRAST_CONFIG, IVCONTRAST_* variables) to find
the web app's port, and asks it on the loopback address.
"""

import sys
import urllib.error
import urllib.request

from ivcontrast.config import SettingsError, load_settings


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        sys.stderr.write(f"healthcheck: {exc}\n")
        return 1
    url = f"http://127.0.0.1:{settings.web.port}/health"
    request = urllib.request.Request(url)
    if settings.web.token and not settings.web.public_health:
        request.add_header("Authorization", f"Bearer {settings.web.token}")
    try:
        with urllib.request.urlopen(request, timeout=8) as response:
            sys.stdout.write(f"{url}: {response.status}\n")
            return 0
    except urllib.error.HTTPError as exc:
        sys.stderr.write(f"{url}: {exc.code} {exc.read(2000).decode(errors='replace')}\n")
    except OSError as exc:
        sys.stderr.write(f"{url}: {exc}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
