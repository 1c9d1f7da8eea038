// Routes by role; the signed-out pages, and everything else inside the signed-in Layout.
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { useState, type ReactNode } from "react";
import { BrowserRouter, Navigate, Route, Routes } from "react-router";
import { Layout } from "./components/Layout";
import { Loading } from "./components/ui";
import { ApiError } from "./lib/api";
import { AuthProvider, useAuth, type Role } from "./lib/auth";
import { AdminHome, LedgerPage, LeaderboardPage, UsersPage } from "./pages/admin";
import { LoginPage, RegisterPage } from "./pages/auth";
import { ModelsPage, ModelVersionPage } from "./pages/models";
import { AgentPage, AgentsPage, ApiKeysPage, InboxPage } from "./pages/operator";
import { PasswordForm, ProfilePage, WalletPage } from "./pages/profile";
import { NewTaskPage, TaskListPage, TaskPage } from "./pages/tasks";

export function makeQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        retry: (count, error) => !(error instanceof ApiError && error.status >= 400 && error.status < 500) && count < 2,
        staleTime: 5_000,
        refetchOnWindowFocus: true,
      },
    },
  });
}

const HOME: Record<Role, string> = { buyer: "/tasks", agent: "/agents", admin: "/admin" };

function RequireAuth({ roles, children }: { roles?: Role[]; children: ReactNode }) {
  const { signedIn, profile, loading } = useAuth();
  if (!signedIn) return <Navigate to="/login" replace />;
  if (loading || !profile) return <Loading label="Signing in…" />;
  if (profile.must_change_password) return <MustChangePassword />;
  if (roles && !roles.includes(profile.role)) return <Navigate to={HOME[profile.role]} replace />;
  return <>{children}</>;
}

function MustChangePassword() {
  const { logout } = useAuth();
  return (
    <main id="main" className="mx-auto max-w-md px-4 py-16">
      <h1 className="mb-2 text-2xl font-semibold">Choose a new password</h1>
      <p className="mb-6 text-sm text-slate-600">An admin reset your password. Enter the temporary password you were given and a new one to continue.</p>
      <PasswordForm title="New password" />
      <button type="button" className="mt-4 text-sm text-indigo-700 underline" onClick={() => void logout()}>
        Log out
      </button>
    </main>
  );
}

function Home() {
  const { profile } = useAuth();
  return profile ? <Navigate to={HOME[profile.role]} replace /> : <Loading />;
}

function NotFound() {
  return (
    <div className="py-16 text-center">
      <h1 className="text-2xl font-semibold">Page not found</h1>
      <p className="mt-2 text-sm text-slate-600">There is nothing at this address.</p>
    </div>
  );
}

export function AppRoutes() {
  return (
    <Routes>
      <Route path="/login" element={<LoginPage />} />
      <Route path="/register" element={<RegisterPage />} />
      <Route element={<RequireAuth><Layout /></RequireAuth>}>
        <Route index element={<Home />} />
        <Route path="tasks" element={<RequireAuth roles={["buyer", "admin"]}><TaskListPage /></RequireAuth>} />
        <Route path="tasks/new" element={<RequireAuth roles={["buyer"]}><NewTaskPage /></RequireAuth>} />
        <Route path="tasks/:taskId" element={<TaskPage />} />
        <Route path="wallet" element={<RequireAuth roles={["buyer"]}><WalletPage /></RequireAuth>} />
        <Route path="profile" element={<ProfilePage />} />
        <Route path="agents" element={<RequireAuth roles={["agent", "admin"]}><AgentsPage /></RequireAuth>} />
        <Route path="agents/:agentId" element={<RequireAuth roles={["agent", "admin"]}><AgentPage /></RequireAuth>} />
        <Route path="inbox" element={<RequireAuth roles={["agent"]}><InboxPage /></RequireAuth>} />
        <Route path="api-keys" element={<RequireAuth roles={["agent", "admin"]}><ApiKeysPage /></RequireAuth>} />
        <Route path="leaderboard" element={<LeaderboardPage />} />
        <Route path="admin" element={<RequireAuth roles={["admin"]}><AdminHome /></RequireAuth>} />
        <Route path="admin/users" element={<RequireAuth roles={["admin"]}><UsersPage /></RequireAuth>} />
        <Route path="admin/ledger" element={<RequireAuth roles={["admin"]}><LedgerPage /></RequireAuth>} />
        <Route path="models" element={<RequireAuth roles={["admin"]}><ModelsPage /></RequireAuth>} />
        <Route path="models/:version" element={<RequireAuth roles={["admin"]}><ModelVersionPage /></RequireAuth>} />
        <Route path="*" element={<NotFound />} />
      </Route>
    </Routes>
  );
}

export function App() {
  const [queryClient] = useState(makeQueryClient);
  return (
    <QueryClientProvider client={queryClient}>
      <AuthProvider>
        <BrowserRouter>
          <AppRoutes />
        </BrowserRouter>
      </AuthProvider>
    </QueryClientProvider>
  );
}
