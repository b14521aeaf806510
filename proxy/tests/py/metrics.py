"""Scrapes the proxy's /metrics and parses it with prometheus_client's OpenMetrics parser
(the real one, as a Prometheus-compatible scraper would), then prints the result as JSON:

  {"content_type": "...",
   "families": {NAME: {"type": T, "help": H,
                       "samples": [{"name": N, "labels": {...}, "value": V}, ...]}}}

Usage: metrics.py URL. Exits non-zero when the text does not parse.
"""
import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main():
    url = sys.argv[1]
    with urllib.request.urlopen(url, timeout=10) as r:
        content_type = r.headers.get("Content-Type", "")
        text = r.read().decode("utf-8")
    families = {}
    for fam in text_string_to_metric_families(text):
        families[fam.name] = {
            "type": fam.type,
            "help": fam.documentation,
            "samples": [
                {"name": s.name, "labels": dict(s.labels), "value": s.value}
                for s in fam.samples
            ],
        }
    print(json.dumps({"content_type": content_type, "families": families}))


if __name__ == "__main__":
    main()
