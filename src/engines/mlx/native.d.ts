// Python sources imported as text (`with { type: "text" }`): the MLX worker is embedded this way.
declare module "*.py" {
  const text: string;
  export default text;
}
