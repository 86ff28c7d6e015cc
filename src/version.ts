// Injected at build time with `--define`; running from source falls back to "dev".
declare const LMX_BUILD_VERSION: string | undefined;
declare const LMX_BUILD_CHANNEL: string | undefined;

export const VERSION: string = typeof LMX_BUILD_VERSION === "string" ? LMX_BUILD_VERSION : "dev";
export const CHANNEL: string = typeof LMX_BUILD_CHANNEL === "string" ? LMX_BUILD_CHANNEL : "dev";
