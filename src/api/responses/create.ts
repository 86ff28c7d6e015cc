// POST /v1/responses: the body as a core request (requests.ts), the core's events as output items
// (output.ts), streamed as Responses events with growing sequence numbers or answered whole, and
// kept in the store unless `store: false`.
import { randomBytes } from "node:crypto";
import { Elysia } from "elysia";
import { Collector, type GenerationResult } from "../../core/collect.ts";
import type { InferenceCore } from "../../core/service.ts";
import { LmxError } from "../../errors.ts";
import type { ResponseStore } from "../../responses/store.ts";
import { mapError } from "../errors.ts";
import { sseFormat, sseResponse } from "../sse.ts";
import { OutputShaper, type StreamEvent } from "./output.ts";
import { type Item, toResponseRequest } from "./requests.ts";
import { responseObject, type ResponseShape } from "./response.ts";
import { ResponseBody } from "./schemas.ts";

export const newResponseId = () => `resp_${randomBytes(24).toString("hex")}`;

class PreviousResponseNotFoundError extends LmxError {
  constructor(id: string) {
    super(`Previous response with id '${id}' not found.`, 404, "invalid_request_error", "previous_response_not_found", "previous_response_id");
  }
}

/** The items a response continues: the earlier response's whole conversation, its output last. */
function earlierItems(store: ResponseStore, id: string | null | undefined): Item[] {
  if (!id) return [];
  const previous = store.get(id);
  if (!previous) throw new PreviousResponseNotFoundError(id);
  return [...previous.input, ...(previous.response.output as Item[])];
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/**
 * Responses' stream names each event (`event: response.output_text.delta`) and has no [DONE]. A
 * failure after output began is reported inside as `response.failed`; anything that escapes that
 * still ends the stream with an `error` event in OpenAI's error shape.
 */
const RESPONSES_SSE = sseFormat((err) => ({ event: "error", data: mapError(err).body }), null);

export function createResponseRoutes(core: InferenceCore, store: ResponseStore) {
  return new Elysia().post("/v1/responses", async ({ body, request }) => {
    const earlier = earlierItems(store, body.previous_response_id);
    const { request: generation, tools, input } = toResponseRequest(body, earlier);
    const shape: ResponseShape = { id: newResponseId(), createdAt: nowSeconds(), body, store: body.store !== false };
    const keep = (response: Item) => {
      if (shape.store) store.save(shape.id, response, [...earlier, ...input]);
      return response;
    };
    const finished = (shaper: OutputShaper, r: GenerationResult) => {
      const incomplete = r.finishReason === "length";
      shaper.finish(incomplete);
      return responseObject(shape, incomplete ? "incomplete" : "completed", shaper.items, r.usage);
    };
    const collector = new Collector();

    if (!body.stream) {
      const shaper = new OutputShaper(tools);
      await core.generate(body.model, [generation], (e) => {
        collector.add(e);
        shaper.on(e);
      }, request.signal, "openai.responses");
      return keep(finished(shaper, collector.result()));
    }

    return sseResponse(request.signal, async (send) => {
      let sequence = 0;
      const emit = (event: StreamEvent) => send({ ...event, sequence_number: sequence++ }, event.type);
      // The response is announced with the first sign of life from the engine, so a failure
      // before it (unknown model, prompt too long, full queue) is still a plain HTTP error.
      let started = false;
      const start = () => {
        if (started) return;
        started = true;
        const response = responseObject(shape, "in_progress", [], null);
        emit({ type: "response.created", response });
        emit({ type: "response.in_progress", response });
      };
      const shaper = new OutputShaper(tools, emit);
      await core.generate(body.model, [generation], (e) => {
        collector.add(e);
        if (e.type === "error") return;
        start();
        shaper.on(e);
      }, request.signal, "openai.responses");
      let result: GenerationResult;
      try {
        result = collector.result();
      } catch (err) {
        if (!started) throw err;
        // After output began the status line is sent: the failure is the stream's last event.
        const { body: mapped } = mapError(err);
        const failed = responseObject(shape, "failed", shaper.items, null, { code: mapped.error.code ?? "server_error", message: mapped.error.message });
        emit({ type: "response.failed", response: failed });
        return;
      }
      const response = keep(finished(shaper, result));
      emit({ type: response.status === "incomplete" ? "response.incomplete" : "response.completed", response });
    }, RESPONSES_SSE);
  }, {
    body: ResponseBody,
    detail: {
      summary: "Create a model response",
      tags: ["OpenAI Responses"],
      description: "OpenAI Responses API: text, reasoning, function and custom tool calls, structured output, streaming events, and stored responses continued by previous_response_id.",
    },
  });
}
