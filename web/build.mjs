// Bundles web/src into lxcloud/web/static: app.js, app.css (with xterm's CSS), the chunks app.js
// imports on demand (terminal-<hash>.js: xterm.js) and index.html, which
// loads them with a content-hash query so a new build is never served from a stale cache.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "lxcloud", "web", "static");
// a clean slate: chunks of an earlier build (content-hashed names) would pile up
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await esbuild.build({
  entryPoints: { app: join(here, "src", "main.js") },
  bundle: true,
  minify: true,
  format: "esm",
  // dynamic imports (xterm.js, loaded when a terminal tab opens) become chunks of their own
  splitting: true,
  chunkNames: "[name]-[hash]",
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
