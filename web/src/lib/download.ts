// Download an authenticated API response as a file (exports need the bearer token).
import { authFetch, toApiError } from "./api";

export async function downloadFile(url: string, filename: string): Promise<void> {
  const response = await authFetch(new Request(url));
  if (!response.ok) throw toApiError(response.status, await response.json().catch(() => null));
  const blob = await response.blob();
  const href = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = href;
  link.download = filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  URL.revokeObjectURL(href);
}
