import { describe, expect, it } from "vitest";
import { chartRows, EARNED, SPENT } from "./MoneyChart";

const point = (start: string, fields: Partial<Record<"spent_sat" | "refunded_sat" | "earned_sat", number>>) => ({ start, deposited_sat: 0, paid_out_sat: 0, spent_sat: 0, refunded_sat: 0, earned_sat: 0, ...fields });

describe("chartRows", () => {
  it("plots spending net of refunds with a running total", () => {
    const rows = chartRows(
      [point("2026-12-01T00:00:00Z", { spent_sat: 5000, refunded_sat: 1000 }), point("2026-12-02T00:00:00Z", {}), point("2026-12-03T00:00:00Z", { spent_sat: 200 })],
      SPENT,
      "day",
    );
    expect(rows.map((r) => r.amount)).toEqual([4000, 0, 200]);
    expect(rows.map((r) => r.total)).toEqual([4000, 4000, 4200]);
    expect(rows[0].label).toBe("01 Dec");
  });

  it("labels hour buckets with the hour (UTC) and reads earnings", () => {
    const rows = chartRows([point("2026-12-01T13:00:00Z", { earned_sat: 70 })], EARNED, "hour");
    expect(rows[0]).toEqual({ label: "01 Dec 13:00", amount: 70, total: 70 });
  });
});
