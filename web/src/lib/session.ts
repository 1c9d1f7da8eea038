// The signed-in session: the access JWT and the refresh token, kept in localStorage so that a
// reload stays signed in. Components read it through useSession (auth.tsx), never directly.

export interface StoredSession {
  accessToken: string;
  refreshToken: string;
}

const KEY = "dukenet.session";

type Listener = (session: StoredSession | null) => void;
const listeners = new Set<Listener>();

export function loadSession(): StoredSession | null {
  try {
    const raw = localStorage.getItem(KEY);
    if (!raw) return null;
    const parsed = JSON.parse(raw) as Partial<StoredSession>;
    if (typeof parsed.accessToken === "string" && typeof parsed.refreshToken === "string") {
      return { accessToken: parsed.accessToken, refreshToken: parsed.refreshToken };
    }
  } catch {
    // a corrupt entry is the same as none
  }
  return null;
}

export function saveSession(session: StoredSession | null): void {
  if (session) localStorage.setItem(KEY, JSON.stringify(session));
  else localStorage.removeItem(KEY);
  for (const listener of listeners) listener(session);
}

export function onSessionChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
