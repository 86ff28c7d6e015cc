// Stored responses: GET and DELETE /v1/responses/{id}, and the input items of one.
import { Elysia } from "elysia";
import { LmxError } from "../../errors.ts";
import type { ResponseStore } from "../../responses/store.ts";
import { InputItemsQuery, ResponseIdParams } from "./schemas.ts";

class ResponseNotFoundError extends LmxError {
  constructor(id: string) {
    super(`No response found with id '${id}'.`, 404, "invalid_request_error", "not_found", "id");
  }
}

const DEFAULT_LIMIT = 20;

export function storedResponseRoutes(store: ResponseStore) {
  const found = (id: string) => {
    const stored = store.get(id);
    if (!stored) throw new ResponseNotFoundError(id);
    return stored;
  };
  return new Elysia()
    .get("/v1/responses/:id", ({ params }) => found(params.id).response, {
      params: ResponseIdParams,
      detail: { summary: "Retrieve a stored response", tags: ["OpenAI Responses"] },
    })
    .delete("/v1/responses/:id", ({ params }) => {
      if (!store.delete(params.id)) throw new ResponseNotFoundError(params.id);
      return { id: params.id, object: "response", deleted: true };
    }, {
      params: ResponseIdParams,
      detail: { summary: "Delete a stored response", tags: ["OpenAI Responses"] },
    })
    .get("/v1/responses/:id/input_items", ({ params, query }) => {
      const items = found(params.id).input;
      const ordered = query.order === "asc" ? items : [...items].reverse();
      let from = 0;
      if (query.after !== undefined) {
        const at = ordered.findIndex((it) => it.id === query.after);
        if (at < 0) throw new LmxError(`after: no input item '${query.after}' in response '${params.id}'`, 400, "invalid_request_error", "invalid_value", "after");
        from = at + 1;
      }
      const limit = query.limit ?? DEFAULT_LIMIT;
      const data = ordered.slice(from, from + limit);
      return {
        object: "list",
        data,
        first_id: (data[0]?.id as string | undefined) ?? null,
        last_id: (data.at(-1)?.id as string | undefined) ?? null,
        has_more: from + limit < ordered.length,
      };
    }, {
      params: ResponseIdParams,
      query: InputItemsQuery,
      detail: { summary: "List a stored response's input items", tags: ["OpenAI Responses"], description: "The conversation's input items, earlier responses' (by previous_response_id) included; `order` desc by default." },
    });
}
