// A mutation's error as a message plus per-field messages (the API's 4xx next to its field).
import { ApiError } from "./api";

export function fieldError(error: unknown, field: string): string | undefined {
  return error instanceof ApiError ? error.fields[field] : undefined;
}

/** The message to show above the form: a 4xx's detail, or the fields it names. */
export function formError(error: unknown): string | undefined {
  if (!error) return undefined;
  if (error instanceof ApiError && Object.keys(error.fields).length) return "Please fix the fields marked below.";
  return error instanceof Error ? error.message : "something went wrong";
}
