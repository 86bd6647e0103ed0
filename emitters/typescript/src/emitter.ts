// Emitting to roomcast rooms over EventBridge: validation and the frame rule from the contract, then PutEvents.
import { EventBridgeClient, PutEventsCommand, type PutEventsRequestEntry } from "@aws-sdk/client-eventbridge";
import Ajv2020, { type ValidateFunction } from "ajv/dist/2020";

import { DEFAULT_BUS, type DetailType, FRAMES, SCHEMAS, TypedCalls } from "./contract";

export const DEFAULT_SOURCE = "roomcast.emitter";
const DETAIL_FIELD = "$detail";
// PutEvents takes at most 10 entries a call.
const ENTRIES_PER_CALL = 10;

/** Nothing was sent (or, for PublishFailed, EventBridge refused it). */
export class EmitterError extends Error {
  override name = "EmitterError";
}

/** The detail is not what roomcast accepts: it would be dropped on arrival. */
export class InvalidEvent extends EmitterError {
  override name = "InvalidEvent";
}

/** What the event pushes would not fit a WebSocket frame. */
export class FrameTooLarge extends InvalidEvent {
  override name = "FrameTooLarge";
}

/** EventBridge did not take an entry. */
export class PublishFailed extends EmitterError {
  override name = "PublishFailed";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

// The schemas' patterns are Python's and JavaScript's alike; formats are not asserted by roomcast either.
const ajv = new Ajv2020({ allErrors: false, strict: false, validateFormats: false });
const validators = new Map<string, ValidateFunction>(
  Object.entries(SCHEMAS).map(([name, schema]) => [name, ajv.compile(schema)]),
);

/** Bytes as roomcast writes a frame: compact JSON, UTF-8. */
function encodedSize(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value), "utf8");
}

function shaped(shape: Record<string, unknown>, detail: Record<string, unknown>): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(shape)) {
    const field = typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
    if (field !== undefined && Object.keys(field).length === 1 && typeof field[DETAIL_FIELD] === "string") {
      const taken = detail[field[DETAIL_FIELD] as string];
      if (taken !== undefined && taken !== null) result[name] = taken;
    } else {
      result[name] = value;
    }
  }
  return result;
}

/** The detail without its unset (undefined or null) fields, once it is what roomcast accepts; throws otherwise. */
export function checked(detailType: string, detail: Record<string, unknown>): Record<string, unknown> {
  const validate = validators.get(detailType);
  if (validate === undefined) throw new InvalidEvent(`roomcast has no detail-type ${JSON.stringify(detailType)}`);
  const cleaned = Object.fromEntries(Object.entries(detail).filter(([, value]) => value !== undefined && value !== null));
  if (!validate(cleaned)) {
    const error = validate.errors?.[0];
    const where = error?.instancePath ? error.instancePath.slice(1).replaceAll("/", ".") : "detail";
    throw new InvalidEvent(`${detailType}: ${where}: ${error?.message ?? "invalid"}`);
  }
  const frame = FRAMES[detailType as DetailType];
  if (frame !== undefined && encodedSize(shaped(frame.shape, cleaned)) > frame.maxBytes) {
    throw new FrameTooLarge(`${detailType}: the event would exceed the ${frame.maxBytes}-byte frame limit`);
  }
  return cleaned;
}

export interface EmitterOptions {
  /** The stack's bus (its EventBusName parameter); "roomcast" by default. */
  bus?: string;
  /** The entries' Source: roomcast's rules match on the detail-type, whatever the source. */
  source?: string;
}

/**
 * Puts events on roomcast's bus. Events belong to a company: `company(id)` gives the emitter that sends them.
 *
 *     const emitter = new Emitter(new EventBridgeClient({}), { source: "crm.billing" });
 *     const acme = emitter.company("acme");
 *     await acme.to("user:ana").emit("deal:won", { dealId: "d-7" });
 *     await acme.notify({ userId: "ana", type: "task", title: "Call back" });
 */
export class Emitter {
  private readonly bus: string;
  private readonly source: string;

  constructor(
    private readonly client: EventBridgeClient,
    options: EmitterOptions = {},
  ) {
    this.bus = options.bus ?? DEFAULT_BUS;
    this.source = options.source ?? DEFAULT_SOURCE;
  }

  company(companyId: string): CompanyEmitter {
    return new CompanyEmitter(this, companyId);
  }

  /** Put checked [detail-type, detail] entries, ten a call; their event ids, in order. */
  async put(entries: Array<[string, Record<string, unknown>]>): Promise<string[]> {
    const ids: string[] = [];
    for (let start = 0; start < entries.length; start += ENTRIES_PER_CALL) {
      const batch: PutEventsRequestEntry[] = entries.slice(start, start + ENTRIES_PER_CALL).map(([kind, detail]) => ({
        Source: this.source,
        DetailType: kind,
        Detail: JSON.stringify(detail),
        EventBusName: this.bus,
      }));
      const result = await this.client.send(new PutEventsCommand({ Entries: batch }));
      for (const entry of result.Entries ?? []) {
        if (entry.EventId === undefined) throw new PublishFailed(entry.ErrorCode ?? "Unknown", entry.ErrorMessage ?? "");
        ids.push(entry.EventId);
      }
    }
    return ids;
  }
}

/** The events of one company: `to(room).emit(event, data)`, and one typed call per other detail-type. */
export class CompanyEmitter extends TypedCalls {
  constructor(
    private readonly emitter: Emitter,
    readonly companyId: string,
  ) {
    super();
  }

  /** The rooms an `emit` reaches: `company:{id}`, `user:{id}`, `conversation:{id}` or `analytics:{id}`. */
  to(...rooms: string[]): BroadcastOperator {
    return new BroadcastOperator(this, rooms);
  }

  protected async put(detailType: DetailType, detail: Record<string, unknown>): Promise<string> {
    const [eventId] = await this.putMany([[detailType, detail]]);
    return eventId as string;
  }

  /** Check every entry first: one that fails sends none of them. */
  async putMany(entries: Array<[string, Record<string, unknown>]>): Promise<string[]> {
    const ready = entries.map(
      ([kind, detail]): [string, Record<string, unknown>] => [kind, checked(kind, { ...detail, companyId: this.companyId })],
    );
    return this.emitter.put(ready);
  }
}

/** Rooms chosen with `to`, as Socket.IO's `io.to(room).to(other)`; `emit` sends the event to each. */
export class BroadcastOperator {
  private readonly rooms: string[];

  constructor(
    private readonly company: CompanyEmitter,
    rooms: string[],
  ) {
    this.rooms = [...new Set(rooms)];
  }

  to(...rooms: string[]): BroadcastOperator {
    return new BroadcastOperator(this.company, [...this.rooms, ...rooms]);
  }

  /** One `Emit` per room, all checked before any is sent; their event ids, in room order. */
  async emit(event: string, data: Record<string, unknown> = {}): Promise<string[]> {
    if (this.rooms.length === 0) throw new InvalidEvent("emit needs a room: to(room).emit(event, data)");
    return this.company.putMany(this.rooms.map((room) => ["Emit", { room, event, data }]));
  }
}
