// A sortable table (click a header; sorts the rows shown) with optional server-side paging.
import { useMemo, useState, type ReactNode } from "react";
import { Button, Empty, cx } from "./ui";

export interface Column<T> {
  key: string;
  header: string;
  render: (row: T) => ReactNode;
  /** the value sorted on; columns without it are not sortable */
  sort?: (row: T) => string | number | null | undefined;
  align?: "left" | "right";
}

export interface Paging {
  total: number;
  limit: number;
  offset: number;
  onOffset: (offset: number) => void;
}

interface Props<T> {
  label: string;
  columns: Column<T>[];
  rows: T[];
  rowKey: (row: T) => string;
  empty?: ReactNode;
  paging?: Paging;
  onRowClick?: (row: T) => void;
}

type Direction = "asc" | "desc";

export function DataTable<T>({ label, columns, rows, rowKey, empty, paging, onRowClick }: Props<T>) {
  const [sortKey, setSortKey] = useState<string | null>(null);
  const [direction, setDirection] = useState<Direction>("asc");

  const sorted = useMemo(() => {
    const column = columns.find((c) => c.key === sortKey);
    if (!column?.sort) return rows;
    const value = column.sort;
    const factor = direction === "asc" ? 1 : -1;
    return [...rows].sort((a, b) => {
      const x = value(a);
      const y = value(b);
      if (x === y) return 0;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * factor;
    });
  }, [rows, columns, sortKey, direction]);

  function toggle(key: string) {
    if (sortKey === key) setDirection(direction === "asc" ? "desc" : "asc");
    else {
      setSortKey(key);
      setDirection("asc");
    }
  }

  if (rows.length === 0) return <Empty title={typeof empty === "string" ? empty : "Nothing here yet"}>{typeof empty === "string" ? null : empty}</Empty>;

  return (
    <div>
      <div className="overflow-x-auto rounded-lg ring-1 ring-slate-200">
        <table className="min-w-full divide-y divide-slate-200 text-sm" aria-label={label}>
          <thead className="bg-slate-50">
            <tr>
              {columns.map((column) => {
                const active = sortKey === column.key;
                return (
                  <th
                    key={column.key}
                    scope="col"
                    aria-sort={active ? (direction === "asc" ? "ascending" : "descending") : undefined}
                    className={cx("whitespace-nowrap px-3 py-2 font-semibold text-slate-700", column.align === "right" ? "text-right" : "text-left")}
                  >
                    {column.sort ? (
                      <button type="button" onClick={() => toggle(column.key)} className="inline-flex items-center gap-1 rounded hover:text-indigo-700 focus-visible:outline-2 focus-visible:outline-indigo-600">
                        {column.header}
                        <span aria-hidden="true" className="text-xs text-slate-500">
                          {active ? (direction === "asc" ? "▲" : "▼") : "↕"}
                        </span>
                      </button>
                    ) : column.header ? (
                      column.header
                    ) : (
                      <span className="sr-only">Actions</span>
                    )}
                  </th>
                );
              })}
            </tr>
          </thead>
          <tbody className="divide-y divide-slate-100 bg-white">
            {sorted.map((row) => (
              <tr key={rowKey(row)} className={cx(onRowClick && "cursor-pointer hover:bg-indigo-50/50")} onClick={onRowClick ? () => onRowClick(row) : undefined}>
                {columns.map((column) => (
                  <td key={column.key} className={cx("px-3 py-2 align-top text-slate-800", column.align === "right" && "text-right tabular-nums")}>
                    {column.render(row)}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {paging && paging.total > paging.limit ? <Pager {...paging} /> : null}
    </div>
  );
}

function Pager({ total, limit, offset, onOffset }: Paging) {
  const page = Math.floor(offset / limit) + 1;
  const pages = Math.max(1, Math.ceil(total / limit));
  return (
    <nav aria-label="Pagination" className="mt-3 flex items-center justify-between text-sm text-slate-700">
      <span>
        {offset + 1}–{Math.min(offset + limit, total)} of {total}
      </span>
      <div className="flex items-center gap-2">
        <Button variant="secondary" disabled={offset === 0} onClick={() => onOffset(Math.max(0, offset - limit))}>
          Previous
        </Button>
        <span>
          Page {page} of {pages}
        </span>
        <Button variant="secondary" disabled={offset + limit >= total} onClick={() => onOffset(offset + limit)}>
          Next
        </Button>
      </div>
    </nav>
  );
}
