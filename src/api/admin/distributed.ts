import { Elysia } from "elysia";
import * as v from "valibot";
import type { Coordinator } from "../../distributed/coordinator.ts";
import { MAX_NODES } from "../../distributed/coordinator.ts";
import type { GroupMember } from "../../distributed/member.ts";
import { NotFoundError } from "../../errors.ts";
import { modelStatusJson } from "../model-json.ts";
import { loadSettingsEntries, loadSettingsFromBody } from "./schemas.ts";

const GROUP_ID = /^[0-9a-f-]{8,64}$/;
const Group = v.pipe(v.string(), v.regex(GROUP_ID, "a group id is the coordinator's UUID"));

function groupParam(id: string): string {
  if (!GROUP_ID.test(id)) throw new NotFoundError(`no distributed group '${id.slice(0, 100)}'`);
  return id;
}
const NodeName = v.pipe(v.string(), v.minLength(1), v.maxLength(100));
const Host = v.pipe(v.string(), v.regex(/^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/, "a rank's address is IPv4:port"));

/** POST /admin/v1/distributed/ranks: the coordinator asks this node to load its rank of a group. */
export const JoinBody = v.pipe(
  v.object({
    ...loadSettingsEntries,
    model: v.pipe(v.string(), v.minLength(1), v.maxLength(300)),
    placement: v.object({
      group: Group,
      rank: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_NODES - 1)),
      size: v.pipe(v.number(), v.integer(), v.minValue(2), v.maxValue(MAX_NODES)),
      nodes: v.pipe(v.array(NodeName), v.minLength(2), v.maxLength(MAX_NODES)),
      hosts: v.pipe(v.array(Host), v.minLength(2), v.maxLength(MAX_NODES)),
      coordinator: v.pipe(v.string(), v.maxLength(255)),
      join_timeout_s: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(3600)),
    }),
  }),
  v.check(({ placement: p }) => p.rank < p.size && p.nodes.length === p.size && p.hosts.length === p.size, "placement: rank < size, and one node and one host per rank"),
);

/** `/admin/v1/distributed/…`: what one LMX node asks another to hold one MLX model together. */
export function adminDistributedRoutes({ coordinator, member }: { coordinator: Coordinator; member: GroupMember }) {
  return new Elysia({ prefix: "/admin/v1/distributed" })
    .get("/groups", () => ({ object: "list", data: coordinator.list() }), {
      detail: { summary: "Models this node coordinates across nodes: group, model, nodes by rank, ring addresses", tags: ["Admin"] },
    })
    .post("/prepare", async ({ body }) => member.prepare(body.model), {
      body: v.object({ model: v.pipe(v.string(), v.minLength(1), v.maxLength(300)) }),
      detail: {
        summary: "Check this node can hold a rank of an MLX model (model present, runtime versions) and reserve its port",
        description: "Asked by the coordinating node before a load with `nodes`. Answers {model, port, versions}.",
        tags: ["Admin"],
      },
    })
    .post("/ranks", async ({ body }) => {
      const p = body.placement;
      const status = await member.join(body.model, loadSettingsFromBody(body), {
        group: p.group, rank: p.rank, size: p.size, nodes: p.nodes, hosts: p.hosts, coordinator: p.coordinator, joinTimeoutS: p.join_timeout_s,
      });
      return modelStatusJson(status);
    }, {
      body: JoinBody,
      detail: { summary: "Load this node's rank of a model sharded across nodes (answers once every rank is loaded)", tags: ["Admin"] },
    })
    .get("/groups/:group", ({ params }) => member.heartbeat(groupParam(params.group)), {
      detail: { summary: "The coordinator's heartbeat: this node's rank of the group and its state (404 when it holds none)", tags: ["Admin"] },
    })
    .delete("/groups/:group", async ({ params }) => ({ group: params.group, left: await member.leave(groupParam(params.group)) }), {
      detail: { summary: "Free this node's rank of a group", tags: ["Admin"] },
    });
}
