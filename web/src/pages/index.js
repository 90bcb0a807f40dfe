// The pages registry: one line per page. A page module is
//   export default {path: "#/images", title: "Images", nav: true, render(root, ctx) -> cleanup fn}
// with an optional `name` (the root's data-page; else the path's first part). `path` may hold
// parameters ("#/instances/:name" -> ctx.params.name). ctx = {api, me, params, query, navigate, toast}.
// The nav lists the pages with nav: true in this order.
import instances from "./instances.js";
import instance from "./instance.js";
import resources from "./resources.js";

export default [
  instances,
  instance,
  ...resources,
];
