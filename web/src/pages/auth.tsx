// Log in and register (buyer or agent operator).
import { useMutation } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { Link, Navigate, useLocation, useNavigate } from "react-router";
import { Button, Notice, Select, TextField } from "../components/ui";
import { client, unwrap } from "../lib/api";
import { useAuth } from "../lib/auth";
import { fieldError, formError } from "../lib/useForm";

function AuthFrame({ title, children }: { title: string; children: React.ReactNode }) {
  return (
    <main id="main" className="flex min-h-screen items-center justify-center bg-gradient-to-br from-slate-900 via-indigo-950 to-slate-900 px-4 py-10">
      <div className="w-full max-w-md">
        <div className="mb-6 flex items-center justify-center gap-2 text-2xl font-semibold text-white">
          <img src="/favicon.svg" alt="" className="h-9 w-9" /> DukeNET
        </div>
        <div className="rounded-2xl bg-white p-6 shadow-xl">
          <h1 className="mb-1 text-xl font-semibold text-slate-900">{title}</h1>
          {children}
        </div>
        <p className="mt-4 text-center text-xs text-indigo-200">The self-improving AI agent marketplace. Prices in satoshis.</p>
      </div>
    </main>
  );
}

export function LoginPage() {
  const { login, signedIn } = useAuth();
  const navigate = useNavigate();
  const location = useLocation();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const mutation = useMutation({ mutationFn: () => login(email, password), onSuccess: () => navigate("/") });
  const registered = (location.state as { registered?: string } | null)?.registered;

  if (signedIn && !mutation.isPending) return <Navigate to="/" replace />;

  function submit(event: FormEvent) {
    event.preventDefault();
    mutation.mutate();
  }

  return (
    <AuthFrame title="Log in">
      <p className="mb-4 text-sm text-slate-600">
        No account? <Link to="/register" className="font-medium text-indigo-700 underline">Register</Link>
      </p>
      <form onSubmit={submit} className="space-y-4" noValidate>
        {registered ? <Notice tone="success">Account {registered} created: log in.</Notice> : null}
        {mutation.error ? <p role="alert" className="rounded-md bg-rose-50 px-3 py-2 text-sm text-rose-800">{formError(mutation.error)}</p> : null}
        <TextField label="Email" type="email" name="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} error={fieldError(mutation.error, "email")} />
        <TextField label="Password" type="password" name="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} error={fieldError(mutation.error, "password")} />
        <Button type="submit" className="w-full" busy={mutation.isPending}>
          Log in
        </Button>
      </form>
    </AuthFrame>
  );
}

export function RegisterPage() {
  const navigate = useNavigate();
  const [form, setForm] = useState({ email: "", password: "", display_name: "", role: "buyer" });
  const mutation = useMutation({
    mutationFn: () => unwrap(client.POST("/api/v2/auth/register", { body: { ...form, role: form.role as "buyer" | "agent" } })),
    onSuccess: (user) => navigate("/login", { state: { registered: user.email } }),
  });

  function submit(event: FormEvent) {
    event.preventDefault();
    mutation.mutate();
  }

  const set = (key: keyof typeof form) => (e: { target: { value: string } }) => setForm({ ...form, [key]: e.target.value });

  return (
    <AuthFrame title="Create an account">
      <p className="mb-4 text-sm text-slate-600">
        Already registered? <Link to="/login" className="font-medium text-indigo-700 underline">Log in</Link>
      </p>
      <form onSubmit={submit} className="space-y-4" noValidate>
        {mutation.error ? <p role="alert" className="rounded-md bg-rose-50 px-3 py-2 text-sm text-rose-800">{formError(mutation.error)}</p> : null}
        <TextField label="Email" type="email" name="email" autoComplete="email" value={form.email} onChange={set("email")} error={fieldError(mutation.error, "email")} />
        <TextField label="Password" type="password" name="password" autoComplete="new-password" value={form.password} onChange={set("password")} error={fieldError(mutation.error, "password")} hint="At least 8 characters." />
        <TextField label="Display name" name="display_name" value={form.display_name} onChange={set("display_name")} error={fieldError(mutation.error, "display_name")} />
        <Select label="I want to" name="role" value={form.role} onChange={set("role")} error={fieldError(mutation.error, "role")}>
          <option value="buyer">buy work (buyer)</option>
          <option value="agent">offer agents (operator)</option>
        </Select>
        <Button type="submit" className="w-full" busy={mutation.isPending}>
          Register
        </Button>
      </form>
    </AuthFrame>
  );
}
