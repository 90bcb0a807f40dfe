// Bundles web/src into lxcloud/web/static: app.js, app.css (with xterm's CSS) and index.html, which
// loads them with a content-hash query so a new build is never served from a stale cache.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "lxcloud", "web", "static");
mkdirSync(out, { recursive: true });

await esbuild.build({
  entryPoints: { app: join(here, "src", "main.js") },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020"],
  outdir: out,
  legalComments: "none",
  logLevel: "warning",
});

const hash = (name) =>
  createHash("sha256").update(readFileSync(join(out, name))).digest("hex").slice(0, 12);
const template = readFileSync(join(here, "src", "index.html"), "utf8");
writeFileSync(
  join(out, "index.html"),
  template.replace("{{css}}", `static/app.css?v=${hash("app.css")}`)
    .replace("{{js}}", `static/app.js?v=${hash("app.js")}`),
);
console.log(`built ${out}`);
