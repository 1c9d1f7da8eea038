import { fireEvent, render, screen, within } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { DataTable, type Column } from "./DataTable";

interface Row {
  id: string;
  name: string;
  price: number;
}

const rows: Row[] = [
  { id: "1", name: "beta", price: 30 },
  { id: "2", name: "alpha", price: 10 },
  { id: "3", name: "gamma", price: 20 },
];
const columns: Column<Row>[] = [
  { key: "name", header: "Name", render: (r) => r.name, sort: (r) => r.name },
  { key: "price", header: "Price", render: (r) => String(r.price), sort: (r) => r.price },
];

function names(): string[] {
  return within(screen.getByRole("table")).getAllByRole("row").slice(1).map((tr) => tr.querySelector("td")?.textContent ?? "");
}

describe("DataTable", () => {
  it("sorts by a header, ascending then descending", () => {
    render(<DataTable label="Agents" columns={columns} rows={rows} rowKey={(r) => r.id} />);
    expect(names()).toEqual(["beta", "alpha", "gamma"]);
    fireEvent.click(screen.getByRole("button", { name: /Price/ }));
    expect(names()).toEqual(["alpha", "gamma", "beta"]);
    expect(screen.getByRole("columnheader", { name: /Price/ }).getAttribute("aria-sort")).toBe("ascending");
    fireEvent.click(screen.getByRole("button", { name: /Price/ }));
    expect(names()).toEqual(["beta", "gamma", "alpha"]);
  });

  it("pages through the server's pages", () => {
    const onOffset = vi.fn();
    render(<DataTable label="Agents" columns={columns} rows={rows} rowKey={(r) => r.id} paging={{ total: 7, limit: 3, offset: 3, onOffset }} />);
    expect(screen.getByText("4–6 of 7")).toBeTruthy();
    fireEvent.click(screen.getByRole("button", { name: "Next" }));
    expect(onOffset).toHaveBeenCalledWith(6);
    fireEvent.click(screen.getByRole("button", { name: "Previous" }));
    expect(onOffset).toHaveBeenCalledWith(0);
  });

  it("shows the empty state", () => {
    render(<DataTable label="Agents" columns={columns} rows={[]} rowKey={(r) => r.id} empty="No agents yet." />);
    expect(screen.getByText("No agents yet.")).toBeTruthy();
  });
});
