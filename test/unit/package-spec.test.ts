import { describe, expect, test } from "bun:test";
import { InvalidRequestError } from "../../src/errors.ts";
import { describeSpec, parsePackageSpec } from "../../src/runtimes/package-spec.ts";
import { mlxRequirements } from "../../src/runtimes/versions.ts";

describe("mlx-lm / mlx version choices", () => {
  test("versions and git URLs become exact requirement lines", () => {
    const git = parsePackageSpec("git+https://github.com/ml-explore/mlx-lm@main", "mlx_lm", true);
    expect(git).toEqual({ kind: "git", url: "https://github.com/ml-explore/mlx-lm", ref: "main" });
    expect(mlxRequirements("linux", { mlxLm: git })).toEqual(["mlx[cpu]==0.32.4", "mlx-lm @ git+https://github.com/ml-explore/mlx-lm@main"]);
    const pinnedGit = parsePackageSpec("git+file:///srv/mlx-lm@3f2a9c1", "mlx_lm", true);
    expect(describeSpec(pinnedGit)).toBe("git+file:///srv/mlx-lm@3f2a9c1");
    expect(mlxRequirements("darwin", { mlx: parsePackageSpec("0.31.0rc1", "mlx", false), mlxLm: parsePackageSpec("0.30.7", "mlx_lm", true) }))
      .toEqual(["mlx==0.31.0rc1", "mlx-lm==0.30.7"]);
    expect(mlxRequirements("linux")).toEqual(["mlx[cpu]==0.32.4", "mlx-lm==0.32.2"]);
    expect(parsePackageSpec("git+https://host/repo", "mlx_lm", true)).toEqual({ kind: "git", url: "https://host/repo", ref: undefined });
  });

  test("anything that could smuggle options, credentials or other packages into uv is refused", () => {
    for (const bad of [
      "0.32.1 --index-url http://x", "0.32.1;rm", "-e .", "mlx-lm==0.32.1", ">=0.30", "git+https://u:p@host/r", "git+https://host/r@main extra",
      "git+ssh://host/r", "git+https://host/r@../x", "git+https://host/r@refs/", "git+https://host/r@x.lock", "git+https://host/r#egg=x", "", "0.32.1\n",
    ]) {
      expect(() => parsePackageSpec(bad, "mlx_lm", true)).toThrow(InvalidRequestError);
    }
    expect(() => parsePackageSpec("git+https://host/r", "mlx", false)).toThrow("mlx: 'git+https://host/r' is not a version such as 0.32.4");
  });
});
