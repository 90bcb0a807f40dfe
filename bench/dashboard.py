#!/usr/bin/env python3
"""Dashboard: the first paint of the instance list with N instances (stopped ones are cheap, see
bench/api.py) in headless Chromium (Debian's, driven by Playwright): time from navigation to the
first contentful paint and to the list's rows in the DOM, cold and warm cache, where the time goes
(the assets, GET /api/v1/instances, rendering), the bundle's size and how many rows are in the DOM
(the list is virtualised).

    .venv/bin/python bench/dashboard.py --count 1000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _cloud import BenchCloud  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

STATIC = Path(__file__).resolve().parents[1] / "lxcloud" / "web" / "static"

TIMING = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const fcp = performance.getEntriesByName("first-contentful-paint")[0];
  const list = performance.getEntriesByType("resource").find((r) => r.name.includes("/api/v1/instances"));
  const js = performance.getEntriesByType("resource").find((r) => r.name.includes("app.js"));
  return {fcp: fcp ? fcp.startTime : null, dom: nav.domContentLoadedEventEnd,
          list_start: list ? list.startTime : null, list_end: list ? list.responseEnd : null,
          js: js ? js.responseEnd - js.startTime : null,
          rows_at: window.__rowsAt || null};
}"""

# when the first instance row is in the DOM (set by a MutationObserver before the app runs)
WATCH = """
new MutationObserver((_, obs) => {
  if (document.querySelector("tr[data-id]")) { window.__rowsAt = performance.now(); obs.disconnect(); }
}).observe(document, {childList: true, subtree: true});
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--loads", type=int, default=7)
    args = ap.parse_args()
    cloud = BenchCloud(config={"max_instances_per_project": args.count + 10})
    try:
        cloud.cli("image", "build", "busybox")
        t0 = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: cloud.launch("busybox", f"d{i}", start=False),
                          range(args.count)))
        print(f"created {args.count} instances in {time.perf_counter() - t0:.1f} s")
        token = (cloud.data_dir / "admin.token").read_text().strip()
        sizes = {p.name: p.stat().st_size for p in STATIC.iterdir()}
        print("bundle: " + ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in sorted(sizes.items())))
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium",
                                  args=["--no-sandbox", "--disable-dev-shm-usage"])
            for cache in ("cold", "warm"):
                ctx = b.new_context(viewport={"width": 1366, "height": 768})
                ctx.add_init_script(f"sessionStorage.setItem('lxcloud.token', {token!r});" + WATCH)
                page = ctx.new_page()
                runs = []
                for k in range(args.loads + (1 if cache == "warm" else 0)):
                    if cache == "cold":
                        page.close()
                        ctx.clear_cookies()
                        page = ctx.new_page()
                        cdp = ctx.new_cdp_session(page)
                        cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
                    page.goto(cloud.url + "/#/instances")
                    page.wait_for_selector("tr[data-id]")
                    got = page.evaluate(TIMING)
                    got["rows"] = page.locator("tr[data-id]").count()
                    if cache == "warm" and k == 0:
                        continue       # the load that fills the cache
                    runs.append(got)
                med = {key: statistics.median(r[key] for r in runs if r[key] is not None)
                       for key in ("fcp", "dom", "list_start", "list_end", "rows_at", "js")}
                print(f"{cache} cache, {args.count} instances, median of {len(runs)} loads:")
                print(f"  first contentful paint      {med['fcp']:7.0f} ms")
                print(f"  instance rows in the DOM    {med['rows_at']:7.0f} ms "
                      f"({runs[-1]['rows']} rows in the DOM of {args.count}: virtualised)")
                print(f"    app.js fetched in         {med['js']:7.0f} ms")
                print(f"    GET /api/v1/instances     {med['list_start']:7.0f} -> "
                      f"{med['list_end']:.0f} ms ({med['list_end'] - med['list_start']:.0f} ms)")
                print(f"    parse + render the list   {med['rows_at'] - med['list_end']:7.0f} ms")
                ctx.close()
            b.close()
    finally:
        cloud.clean_up()


if __name__ == "__main__":
    main()
