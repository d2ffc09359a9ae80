"""Settings for bench/bench_verify.py's gunicorn: the production settings (read from the
environment as usual) with one change, the URLconf, which adds the benchmark's
constant view (bench/verify_urls.py). The product itself has no such endpoint: a
public URL that answers without doing anything is only a load-test target, and one
more thing to keep off the internet."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.verify_urls"
