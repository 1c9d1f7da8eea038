import { describe, expect, it } from "vitest";
import type { Schemas } from "../lib/api";
import { successRows } from "./SuccessChart";

const point = (start: string, fields: Partial<Schemas["AgentSeriesPoint"]>): Schemas["AgentSeriesPoint"] => ({ start, ratings: 0, mean_rating: null, outcomes: 0, successes: 0, success_rate: null, smoothed_success_rate: null, reputation_multiplier: null, ...fields });

describe("successRows", () => {
  it("plots rates as percentages, leaves empty buckets as gaps and totals the window", () => {
    const { rows, outcomes, successes } = successRows(
      [
        point("2026-12-01T00:00:00Z", {}),
        point("2026-12-02T00:00:00Z", { outcomes: 3, successes: 2, success_rate: 2 / 3, smoothed_success_rate: 0.5714, reputation_multiplier: 1.2 }),
        point("2026-12-03T00:00:00Z", { outcomes: 1, successes: 1, success_rate: 1, smoothed_success_rate: 0.6, reputation_multiplier: 1.2 }),
      ],
      "day",
    );
    expect(rows.map((r) => r.rate)).toEqual([null, 66.7, 100]);
    expect(rows.map((r) => r.smoothed)).toEqual([null, 57.1, 60]);
    expect(rows[0]).toEqual({ label: "01 Dec", outcomes: 0, rate: null, smoothed: null, multiplier: null });
    expect([outcomes, successes]).toEqual([4, 3]);
  });
});
