// Generates and edits images against diffuse serve with the official
// OpenAI SDK; prints one JSON line per call for server.TestOpenAINodeSDK.
import fs from "node:fs";
import OpenAI, { toFile } from "openai";

const [baseURL, apiKey, imagePath, maskPath] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });

const gen = await client.images.generate({ prompt: "a lighthouse", model: "dall-e-2", n: 2, size: "64x64", response_format: "b64_json" });
console.log(JSON.stringify({ call: "generate", n: gen.data.length, b64: gen.data.every((d) => d.b64_json && d.b64_json.length > 100) }));

const url = await client.images.generate({ prompt: "a lighthouse", size: "64x64" });
const fetched = await fetch(url.data[0].url);
console.log(JSON.stringify({ call: "url", status: fetched.status, type: fetched.headers.get("content-type") }));

const edit = await client.images.edit({
  image: await toFile(fs.createReadStream(imagePath), "image.png", { type: "image/png" }),
  mask: await toFile(fs.createReadStream(maskPath), "mask.png", { type: "image/png" }),
  prompt: "a red door", size: "64x64", response_format: "b64_json",
});
console.log(JSON.stringify({ call: "edit", n: edit.data.length, b64: !!edit.data[0].b64_json }));

try {
  await client.images.generate({ prompt: "x", n: 1000 });
  console.log(JSON.stringify({ call: "error", caught: false }));
} catch (e) {
  console.log(JSON.stringify({ call: "error", caught: true, status: e.status, code: e.code, type: e.type }));
}
