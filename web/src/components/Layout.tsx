// The signed-in frame: a navigation bar by role, the live task stream, and the page.
import { useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { NavLink, Outlet, useNavigate } from "react-router";
import { useAuth, type Role } from "../lib/auth";
import { formatSat } from "../lib/format";
import { followTaskEvents } from "../lib/live";
import { cx } from "./ui";

interface NavItem {
  to: string;
  label: string;
  roles: Role[];
}

const NAV: NavItem[] = [
  { to: "/admin", label: "Overview", roles: ["admin"] },
  { to: "/tasks", label: "Tasks", roles: ["buyer", "admin"] },
  { to: "/tasks/new", label: "New task", roles: ["buyer"] },
  { to: "/wallet", label: "Wallet", roles: ["buyer"] },
  { to: "/agents", label: "Agents", roles: ["agent", "admin"] },
  { to: "/inbox", label: "Inbox", roles: ["agent"] },
  { to: "/api-keys", label: "API keys", roles: ["agent", "admin"] },
  { to: "/admin/users", label: "Users", roles: ["admin"] },
  { to: "/leaderboard", label: "Leaderboard", roles: ["admin", "agent", "buyer"] },
  { to: "/admin/ledger", label: "Ledger", roles: ["admin"] },
  { to: "/models", label: "Models", roles: ["admin"] },
];

export function Layout() {
  const { profile, logout } = useAuth();
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const [open, setOpen] = useState(false);

  useEffect(() => {
    const controller = new AbortController();
    void followTaskEvents(queryClient, controller.signal);
    return () => controller.abort();
  }, [queryClient]);

  const items = NAV.filter((item) => profile && item.roles.includes(profile.role));

  async function onLogout() {
    await logout();
    navigate("/login");
  }

  return (
    <div className="min-h-screen">
      <a href="#main" className="sr-only focus:not-sr-only focus:absolute focus:left-2 focus:top-2 focus:rounded focus:bg-white focus:px-3 focus:py-2">
        Skip to content
      </a>
      <header className="bg-slate-900 text-slate-100">
        <div className="mx-auto flex max-w-7xl items-center gap-4 px-4 py-3">
          <NavLink to="/" className="flex items-center gap-2 text-lg font-semibold text-white">
            <img src="/favicon.svg" alt="" className="h-7 w-7" /> DukeNET
          </NavLink>
          <nav aria-label="Main" className="hidden flex-1 flex-wrap gap-1 lg:flex">
            {items.map((item) => (
              <NavLink
                key={item.to}
                to={item.to}
                end
                className={({ isActive }) => cx("rounded-md px-3 py-1.5 text-sm", isActive ? "bg-slate-700 text-white" : "text-slate-200 hover:bg-slate-800")}
              >
                {item.label}
              </NavLink>
            ))}
          </nav>
          <div className="ml-auto hidden items-center gap-3 text-sm lg:flex">
            <NavLink to="/profile" className="rounded-md px-2 py-1 text-slate-200 hover:bg-slate-800">
              {profile?.display_name || profile?.email}
              <span className="ml-2 rounded bg-slate-700 px-1.5 py-0.5 text-xs">{profile?.role === "agent" ? "operator" : profile?.role}</span>
            </NavLink>
            {profile?.role === "buyer" ? <span className="tabular-nums text-slate-300">{formatSat(profile.balance_sat)}</span> : null}
            <button type="button" onClick={onLogout} className="rounded-md px-3 py-1.5 text-slate-200 ring-1 ring-slate-600 hover:bg-slate-800">
              Log out
            </button>
          </div>
          <button
            type="button"
            className="ml-auto rounded-md px-3 py-1.5 text-sm ring-1 ring-slate-600 lg:hidden"
            aria-expanded={open}
            aria-controls="mobile-nav"
            onClick={() => setOpen(!open)}
          >
            Menu
          </button>
        </div>
        {open ? (
          <nav id="mobile-nav" aria-label="Main" className="border-t border-slate-700 px-4 pb-3 lg:hidden">
            {[...items, { to: "/profile", label: "Profile", roles: [] }].map((item) => (
              <NavLink key={item.to} to={item.to} end onClick={() => setOpen(false)} className="block rounded-md px-3 py-2 text-sm text-slate-100 hover:bg-slate-800">
                {item.label}
              </NavLink>
            ))}
            <button type="button" onClick={onLogout} className="mt-1 block w-full rounded-md px-3 py-2 text-left text-sm text-slate-100 hover:bg-slate-800">
              Log out
            </button>
          </nav>
        ) : null}
      </header>
      <main id="main" className="mx-auto max-w-7xl px-4 py-6">
        <Outlet />
      </main>
    </div>
  );
}
