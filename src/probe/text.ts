import { rng } from "../util/random.ts";
// Material for the probe's prompts. The filler is ordinary English prose (written for LMX) whose
// sentences are shuffled by a seeded generator, so long contexts have realistic token statistics
// without long verbatim repeats a model could copy from. Passages are random word sequences:
// unpredictable unless the model looks back at where they appeared.

const SENTENCES = [
  "The morning train was late again, so most of the passengers stood on the platform with their coffee.",
  "A small bakery on the corner sells bread until noon and closes as soon as the shelves are empty.",
  "Rain had fallen all night, and the river behind the mill was higher than anyone could remember.",
  "She kept her notes in a blue folder and checked every figure twice before sending the report.",
  "The committee met on Thursday to discuss the budget for the new library wing.",
  "Children ran across the field while their parents set up tables for the summer picnic.",
  "He repaired the old radio with parts he found in a box at the back of the garage.",
  "Most of the village gardens grow beans, potatoes and a few rows of bright yellow flowers.",
  "The museum opened a new exhibition about ships that sailed between the islands two centuries ago.",
  "After the storm, the workers spent three days clearing branches from the mountain road.",
  "Her grandmother taught her to knit during the long winter evenings by the stove.",
  "The price of apples rose sharply when the early frost damaged the orchards in the valley.",
  "A friendly dog followed the postman along the street and waited at every gate.",
  "The students built a model bridge from wooden sticks and tested how much weight it could hold.",
  "Every spring the town paints the benches in the park and plants new trees along the path.",
  "The old lighthouse still works, although a machine now turns the lamp instead of a keeper.",
  "They argued about the route for an hour and then took the road they had planned at the start.",
  "The kitchen smelled of onions, garlic and the soup that had been simmering since lunch.",
  "Snow covered the hills by December, and the farmers brought the sheep down to the lower fields.",
  "The doctor explained the results slowly and answered every question the family asked.",
  "A long queue formed outside the theatre an hour before the doors opened.",
  "The engineer measured the wall again because the first reading did not match the drawings.",
  "Fishermen mended their nets on the harbour wall while gulls circled above the boats.",
  "The library keeps old newspapers in the basement, sorted by year and by month.",
  "He wrote a letter to his brother every week, even when there was little news to share.",
  "The market was busy on Saturday, with stalls selling cheese, honey and fresh vegetables.",
  "A narrow staircase led up to the attic, where boxes of old photographs were stored.",
  "The teacher asked the class to read the first chapter and write a short summary.",
  "Clouds gathered over the sea in the afternoon, and the wind turned cold before sunset.",
  "The bus driver knew most of the passengers by name and greeted each of them in turn.",
  "Her favourite chair stood by the window, where the light was best for reading.",
  "The factory changed its schedule so that the night shift would finish two hours earlier.",
  "A group of hikers reached the summit just as the fog lifted from the valley below.",
  "The cat slept on the warm roof of the shed for most of the afternoon.",
  "Tickets for the concert sold out within minutes of going on sale.",
  "The council agreed to repair the bridge before the start of the harvest season.",
  "He found an old map in the drawer and traced the path of the forgotten railway line.",
  "The garden was quiet except for the sound of bees moving between the lavender bushes.",
  "A new bakery opened near the station, and soon the smell of bread filled the street each morning.",
  "The nurse checked the patients on the ward every two hours throughout the night.",
  "Workers laid new stones in the square, one row at a time, until the job was done.",
  "The river froze for the first time in ten years, and people came to skate on it.",
  "She planted tomatoes along the fence and watered them every evening after work.",
  "The scientist recorded the temperature each hour and drew a chart of the results.",
  "An old clock in the hall struck nine as the guests sat down to dinner.",
  "The village school has only two classrooms, but every child knows every teacher.",
  "Boats returned to the harbour late in the evening, loaded with the day's catch.",
  "The travellers stopped at a small inn where the owner served hot bread and stew.",
  "Leaves turned red and gold in October, and the paths through the wood were thick with them.",
  "The carpenter sanded the table until the surface was smooth enough to reflect the light.",
  "A delivery of books arrived at the shop, and the owner spent the morning filling the shelves.",
  "The road climbed steeply through the forest before it reached the high meadow.",
  "Neighbours helped each other carry furniture when the family moved into the new house.",
  "The choir practised every Tuesday in the church hall, which was cold in winter.",
  "Her brother kept bees behind the house and sold the honey at the weekly market.",
  "The pilot announced that the plane would land twenty minutes ahead of schedule.",
  "A gentle breeze moved the curtains, and the room slowly filled with the scent of the garden.",
  "The mechanic listened to the engine for a moment and then reached for a wrench.",
  "Students crowded into the hall to hear the visiting speaker talk about the history of the town.",
  "The old bridge was closed to cars but remained open to people on foot and on bicycles.",
];

const WORDS = [
  "amber", "basket", "candle", "desert", "engine", "feather", "garden", "harbor", "island", "jacket", "kettle", "ladder",
  "marble", "needle", "orange", "pepper", "quartz", "rabbit", "saddle", "tunnel", "umbrella", "valley", "window", "yellow",
  "zebra", "anchor", "bottle", "cactus", "dragon", "eagle", "forest", "guitar", "helmet", "igloo", "jungle", "kitten",
  "lemon", "mirror", "nutmeg", "oyster", "pillow", "quiver", "rocket", "silver", "tomato", "violin", "walnut", "copper",
  "meadow", "pencil", "cobalt", "lantern", "granite", "thistle", "saffron", "pebble", "falcon", "timber", "velvet", "cedar",
];

export { rng };

/** Shuffled sentences, as many as asked for. */
export function fillerSentences(count: number, random: () => number): string[] {
  const out: string[] = [];
  let pool: string[] = [];
  while (out.length < count) {
    if (pool.length === 0) {
      pool = [...SENTENCES];
      for (let i = pool.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [pool[i], pool[j]] = [pool[j]!, pool[i]!];
      }
    }
    out.push(pool.pop()!);
  }
  return out;
}

export function randomWords(count: number, random: () => number): string {
  return Array.from({ length: count }, () => WORDS[Math.floor(random() * WORDS.length)]!).join(" ");
}

export function randomNumber(digits: number, random: () => number): string {
  let s = String(1 + Math.floor(random() * 9));
  while (s.length < digits) s += String(Math.floor(random() * 10));
  return s;
}
