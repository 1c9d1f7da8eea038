// Upload one file with progress (XMLHttpRequest: fetch has no upload progress), with the same
// token refresh as the API client.
import { ApiError, refreshOnce, toApiError, type Schemas } from "./api";
import { loadSession } from "./session";

function send(file: File, onProgress: (fraction: number) => void): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v2/files");
    const session = loadSession();
    if (session) xhr.setRequestHeader("Authorization", `Bearer ${session.accessToken}`);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      let body: unknown = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      resolve({ status: xhr.status, body });
    };
    xhr.onerror = () => reject(new ApiError(0, "the upload failed: network error"));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

/** Upload `file` (`POST /api/v2/files`); resolves with the stored file, rejects with an ApiError. */
export async function uploadFile(file: File, onProgress: (fraction: number) => void): Promise<Schemas["FileRead"]> {
  let { status, body } = await send(file, onProgress);
  if (status === 401 && (await refreshOnce())) ({ status, body } = await send(file, onProgress));
  if (status < 200 || status >= 300) throw toApiError(status, body);
  onProgress(1);
  return body as Schemas["FileRead"];
}
