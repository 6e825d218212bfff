#!/bin/bash
# The official image's command handling, reduced to what this project uses: `bash ...` and
# `python ...` run as given; anything else is an Airflow command (`scheduler`, `celery worker`,
# `airflow db migrate`) and runs as `airflow ...` once the metadata database accepts connections.
set -euo pipefail

wait_for_database() {
    # Upstream waits up to CONNECTION_CHECK_MAX_COUNT tries (default 20, 0 disables it).
    local tries=${CONNECTION_CHECK_MAX_COUNT:-20}
    [[ "$tries" -gt 0 && -n "${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-}" ]] || return 0
    python - "$tries" <<'PY'
import os, socket, sys, time
from urllib.parse import urlsplit
url = urlsplit(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
if not url.hostname:
    sys.exit(0)
for attempt in range(int(sys.argv[1])):
    try:
        socket.create_connection((url.hostname, url.port or 5432), timeout=3).close()
        sys.exit(0)
    except OSError:
        time.sleep(float(os.environ.get("CONNECTION_CHECK_SLEEP_TIME", "3")))
sys.exit(f"the metadata database at {url.hostname} did not answer")
PY
}

if [[ $# -eq 0 ]]; then
    exec /bin/bash
fi
case "$1" in
    bash | /bin/bash) shift; exec /bin/bash "$@" ;;
    python | python3) shift; exec python "$@" ;;
    airflow) shift ;;
esac
wait_for_database
exec airflow "$@"
