// Who is signed in: the session tokens plus the profile (`GET /users/me`), for every page.
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { client, unwrap, type Schemas } from "./api";
import { loadSession, onSessionChange, saveSession, type StoredSession } from "./session";

export type Profile = Schemas["ProfileRead"];
export type Role = Schemas["UserRole"];

interface AuthValue {
  signedIn: boolean;
  profile: Profile | undefined;
  loading: boolean;
  login: (email: string, password: string) => Promise<void>;
  logout: () => Promise<void>;
}

const AuthContext = createContext<AuthValue | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const [session, setSession] = useState<StoredSession | null>(() => loadSession());
  const queryClient = useQueryClient();

  useEffect(() => onSessionChange(setSession), []);
  useEffect(() => {
    if (!session) queryClient.clear();
  }, [session, queryClient]);

  const profileQuery = useQuery({
    queryKey: ["me"],
    queryFn: () => unwrap(client.GET("/api/v2/users/me")),
    enabled: session !== null,
  });

  const login = useCallback(async (email: string, password: string) => {
    const tokens = await unwrap(client.POST("/api/v2/auth/login", { body: { email, password } }));
    saveSession({ accessToken: tokens.access_token, refreshToken: tokens.refresh_token });
  }, []);

  const logout = useCallback(async () => {
    const current = loadSession();
    saveSession(null);
    if (current) {
      // best effort: the local session is gone either way
      await client.POST("/api/v2/auth/logout", { body: { refresh_token: current.refreshToken } }).catch(() => undefined);
    }
  }, []);

  const value = useMemo<AuthValue>(
    () => ({
      signedIn: session !== null,
      profile: session ? profileQuery.data : undefined,
      loading: session !== null && profileQuery.isPending,
      login,
      logout,
    }),
    [session, profileQuery.data, profileQuery.isPending, login, logout],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthValue {
  const value = useContext(AuthContext);
  if (!value) throw new Error("useAuth outside AuthProvider");
  return value;
}
