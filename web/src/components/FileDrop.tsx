// Drag-and-drop (or pick) files; each uploads at once with a progress bar.
import { useRef, useState, type DragEvent } from "react";
import { errorText, type Schemas } from "../lib/api";
import { uploadFile } from "../lib/upload";
import { Button, cx } from "./ui";

interface Item {
  key: string;
  name: string;
  progress: number;
  file?: Schemas["FileRead"];
  error?: string;
}

export function FileDrop({ onChange }: { onChange: (fileIds: string[]) => void }) {
  const [items, setItems] = useState<Item[]>([]);
  const [over, setOver] = useState(false);
  const input = useRef<HTMLInputElement>(null);

  function update(key: string, patch: Partial<Item>) {
    setItems((current) => {
      const next = current.map((item) => (item.key === key ? { ...item, ...patch } : item));
      onChange(next.flatMap((item) => (item.file ? [item.file.id] : [])));
      return next;
    });
  }

  function add(files: FileList | null) {
    if (!files) return;
    for (const file of Array.from(files)) {
      const key = `${file.name}-${file.size}-${Math.random()}`;
      setItems((current) => [...current, { key, name: file.name, progress: 0 }]);
      uploadFile(file, (progress) => update(key, { progress }))
        .then((stored) => update(key, { file: stored, progress: 1 }))
        .catch((error: unknown) => update(key, { error: errorText(error) }));
    }
  }

  function remove(key: string) {
    setItems((current) => {
      const next = current.filter((item) => item.key !== key);
      onChange(next.flatMap((item) => (item.file ? [item.file.id] : [])));
      return next;
    });
  }

  function onDrop(event: DragEvent) {
    event.preventDefault();
    setOver(false);
    add(event.dataTransfer.files);
  }

  return (
    <div>
      <span className="mb-1 block text-sm font-medium text-slate-800">Files</span>
      <div
        onDragOver={(event) => {
          event.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={onDrop}
        className={cx("flex flex-col items-center justify-center gap-2 rounded-lg border-2 border-dashed px-4 py-6 text-sm text-slate-600", over ? "border-indigo-500 bg-indigo-50" : "border-slate-300")}
      >
        <span>Drop CSV, JSON, PDF, PNG, JPEG or text files here (50 MB each), or</span>
        <Button variant="secondary" onClick={() => input.current?.click()}>
          Choose files
        </Button>
        <input ref={input} type="file" multiple className="sr-only" aria-label="Attach files" onChange={(e) => add(e.target.files)} tabIndex={-1} />
      </div>
      {items.length ? (
        <ul className="mt-3 space-y-2" aria-label="Attached files">
          {items.map((item) => (
            <li key={item.key} className="rounded-md bg-slate-50 px-3 py-2 text-sm ring-1 ring-slate-200">
              <div className="flex items-center justify-between gap-2">
                <span className="truncate font-medium">{item.name}</span>
                <span className="flex items-center gap-2 text-xs text-slate-600">
                  {item.error ? <span className="text-rose-700">{item.error}</span> : item.file ? "uploaded" : `${Math.round(item.progress * 100)}%`}
                  <button type="button" className="rounded px-1 text-slate-700 hover:bg-slate-200" aria-label={`Remove ${item.name}`} onClick={() => remove(item.key)}>
                    ✕
                  </button>
                </span>
              </div>
              <progress className="mt-1 h-1.5 w-full appearance-none overflow-hidden rounded accent-indigo-600 [&::-moz-progress-bar]:bg-indigo-600 [&::-webkit-progress-bar]:bg-slate-200 [&::-webkit-progress-value]:bg-indigo-600" max={1} value={item.progress} aria-label={`Upload of ${item.name}`} />
            </li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}
