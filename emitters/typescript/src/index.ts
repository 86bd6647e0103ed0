// roomcast's emitter for TypeScript services, modelled on @socket.io/redis-emitter:
// new Emitter(new EventBridgeClient({})).company("acme").to("user:ana").emit("deal:won", {...}).
export {
  BroadcastOperator,
  CompanyEmitter,
  checked,
  DEFAULT_SOURCE,
  Emitter,
  EmitterError,
  type EmitterOptions,
  FrameTooLarge,
  InvalidEvent,
  PublishFailed,
} from "./emitter";
export * from "./contract";
