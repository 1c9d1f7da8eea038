import { describe, expect, it } from "vitest";
import { toApiError } from "./api";
import { parseSse } from "./live";

describe("toApiError", () => {
  it("keeps a string detail as the message", () => {
    const error = toApiError(409, { detail: "task is executing" });
    expect(error.status).toBe(409);
    expect(error.message).toBe("task is executing");
    expect(error.fields).toEqual({});
  });

  it("maps a 422 list to the fields it names", () => {
    const error = toApiError(422, {
      detail: [
        { loc: ["body", "complexity"], msg: "Input should be less than or equal to 10" },
        { loc: ["body", "description"], msg: "Value error, must not be blank" },
      ],
    });
    expect(error.fields).toEqual({ complexity: "Input should be less than or equal to 10", description: "must not be blank" });
    expect(error.message).toContain("complexity: Input should be");
  });

  it("says the server failed on a 5xx without a body", () => {
    expect(toApiError(503, null).message).toBe("the server failed; try again");
  });
});

describe("parseSse", () => {
  it("splits events, skips comments and keeps a partial event for later", () => {
    const seen: [string, string][] = [];
    const rest = parseSse('retry: 3000\n: connected\n\nevent: task\ndata: {"a":1}\n\nevent: task\ndata: {"b"', (e, d) => seen.push([e, d]));
    expect(seen).toEqual([["task", '{"a":1}']]);
    expect(rest).toBe('event: task\ndata: {"b"');
    parseSse(rest + ":2}\n\n", (e, d) => seen.push([e, d]));
    expect(seen[1]).toEqual(["task", '{"b":2}']);
  });
});
