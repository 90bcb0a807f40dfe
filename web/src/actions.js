// Instance actions, shared by the instances list and the instance page: which apply in a state,
// the confirmation of destructive ones, and the operation's progress until it ends.
import { api, waitOperation } from "./api.js";
import { confirmDialog, toast } from "./ui.js";

export const ACTIONS = {
  start: { label: "Start", states: ["stopped", "error"] },
  stop: { label: "Stop", states: ["running", "frozen", "error"], confirm: "It stops its processes; its disk is kept." },
  restart: { label: "Restart", states: ["running"], confirm: "Its processes are stopped and started again." },
  suspend: { label: "Suspend", states: ["running"] },
  resume: { label: "Resume", states: ["frozen"] },
  delete: { label: "Delete", states: ["stopped", "error", "running", "frozen", "pending", "stopping", "rebooting"],
    confirm: "Its disk and addresses are released. This cannot be undone." },
};

/** The actions that apply to an instance in its state, in a fixed order. */
export function actionsFor(inst) {
  return Object.entries(ACTIONS).filter(([, a]) => a.states.includes(inst.state)).map(([k]) => k);
}

const running = new Map();       // instance id -> {action, progress, message}
const listeners = new Set();
/** onProgress(fn): fn(instanceId, {action, progress, message} | null) on each change. */
export function onProgress(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
export const progressOf = (id) => running.get(id) || null;
function tell(id, p) {
  if (p) running.set(id, p);
  else running.delete(id);
  for (const fn of listeners) fn(id, p);
}

/**
 * Runs `action` on the instance (after a confirmation where it is destructive) and follows its
 * operation; resolves to the ended operation, or null when the user cancelled.
 */
export async function runAction(inst, action) {
  const a = ACTIONS[action];
  if (a.confirm) {
    const running_ = ["running", "frozen", "rebooting"].includes(inst.state);
    const extra = action === "delete" && running_ ? " It is running: it is stopped first." : "";
    const ok = await confirmDialog(`${a.label} ${inst.name}?`, a.confirm + extra, a.label,
      { danger: action === "delete" || action === "stop" });
    if (!ok) return null;
  }
  tell(inst.id, { action, progress: 0, message: "asking" });
  try {
    const path = `/api/v1/instances/${encodeURIComponent(inst.id)}`;
    const answer = action === "delete"
      ? await api.del(path, { query: { force: ["running", "frozen", "rebooting"].includes(inst.state) ? "true" : null } })
      : await api.post(`${path}/actions/${action}`);
    return await follow(inst, action, answer.operation.id);
  } catch (e) {
    tell(inst.id, null);
    toast(`${a.label} ${inst.name}: ${e.message}`, "error");
    return null;
  }
}

/** Follows an operation on an instance (its progress shown where the instance is), then a toast. */
export async function follow(inst, action, opId) {
  const label = ACTIONS[action] ? ACTIONS[action].label : action;
  tell(inst.id, { action, progress: 0, message: "queued" });
  try {
    const op = await waitOperation(opId, (o) => tell(inst.id, { action, progress: o.progress, message: o.message }));
    if (op.status !== "success") toast(`${label} ${inst.name} failed: ${op.error || op.status}`, "error");
    else toast(`${label}: ${inst.name} done`, "ok", 2500);
    return op;
  } catch (e) {
    toast(`${label} ${inst.name}: ${e.message}`, "error");
    return null;
  } finally {
    tell(inst.id, null);
  }
}
