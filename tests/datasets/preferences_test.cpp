// Tests for rlhf/data/preferences.hpp, rlhf/data/sft.hpp, rlhf/data/chat.hpp and
// rlhf/data/jsonl.hpp (the folder is tests/datasets/ because tests/data/ holds test data).
#include <rlhf/data/preferences.hpp>
#include <rlhf/data/sft.hpp>

#include <doctest/doctest.h>

#include <string>

using namespace rlhf::data;

TEST_CASE("K-wise ranking lines keep completions, ranking, ties and margin") {
  const auto r = read_preferences_text(
      R"({"prompt": "P", "completions": ["a", "b", "c"], "ranking": [2, 0, 1], "ties": [[0, 1]], "margin": 0.5})",
      "k.jsonl");
  REQUIRE(r.records.size() == 1);
  CHECK(r.skipped.empty());
  const auto& rec = r.records[0];
  CHECK(rec.prompt == "P");
  CHECK(rec.completions == std::vector<std::string>{"a", "b", "c"});
  CHECK(rec.ranking == std::vector<int>{2, 0, 1});
  REQUIRE(rec.ties.size() == 1);
  CHECK(rec.ties[0] == std::pair<int, int>{0, 1});
  CHECK(rec.margin == 0.5);
}

TEST_CASE("TRL standard lines, with and without an explicit prompt") {
  const auto r = read_preferences_text(
      "{\"prompt\": \"The sky is\", \"chosen\": \" blue.\", \"rejected\": \" green.\"}\n"
      "{\"chosen\": \"The sky is blue.\", \"rejected\": \"The sky is green.\"}\n",
      "trl.jsonl");
  REQUIRE(r.records.size() == 2);
  CHECK(r.records[0].prompt == "The sky is");
  CHECK(r.records[0].completions == std::vector<std::string>{" blue.", " green."});
  CHECK(r.records[0].ranking == std::vector<int>{0, 1});
  // TRL's extract_prompt: the space before the split point goes to the completions.
  CHECK(r.records[1].prompt == "The sky is");
  CHECK(r.records[1].completions == std::vector<std::string>{" blue.", " green."});
}

TEST_CASE("TRL conversational lines are rendered with ChatML") {
  const auto r = read_preferences_text(
      R"({"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello!"}], "rejected": [{"role": "assistant", "content": "Go away."}]})"
      "\n"
      R"({"chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "No."}]})",
      "chat.jsonl");
  REQUIRE(r.records.size() == 2);
  for (const auto& rec : r.records) {
    CHECK(rec.prompt == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    CHECK(rec.completions[0] == "Hello!<|im_end|>\n");
  }
  CHECK(r.records[0].completions[1] == "Go away.<|im_end|>\n");
  CHECK(r.records[1].completions[1] == "No.<|im_end|>\n");
}

TEST_CASE("HH-RLHF lines split at the last Assistant turn") {
  const auto r = read_preferences_text(
      R"({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: How are you?\n\nAssistant: Fine, thanks.", "rejected": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: How are you?\n\nAssistant: Why?"})",
      "hh.jsonl");
  REQUIRE(r.records.size() == 1);
  CHECK(r.records[0].prompt == "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: How are you?\n\nAssistant:");
  CHECK(r.records[0].completions == std::vector<std::string>{" Fine, thanks.", " Why?"});
}

TEST_CASE("summarize_from_feedback comparisons use the TL;DR prompt and the labeler's choice") {
  const auto r = read_preferences_text(
      R"({"info": {"subreddit": "cats", "title": "My cat", "post": "It sleeps."}, "summaries": [{"text": "  cat sleeps "}, {"text": "dog"}], "choice": 1})",
      "tldr.jsonl");
  REQUIRE(r.records.size() == 1);
  CHECK(r.records[0].prompt == "SUBREDDIT: r/cats\n\nTITLE: My cat\n\nPOST: It sleeps.\n\nTL;DR:");
  CHECK(r.records[0].completions == std::vector<std::string>{" cat sleeps", " dog"});
  CHECK(r.records[0].ranking == std::vector<int>{1, 0});
}

TEST_CASE("bad lines are skipped with their line number and reason, or stop a strict read") {
  const std::string text =
      "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n"
      "\n"
      "not json\n"
      "[1, 2]\n"
      "{\"prompt\": \"p\", \"chosen\": 3, \"rejected\": \"b\"}\n"
      "{\"prompt\": \"p\", \"completions\": [\"a\", \"b\"], \"ranking\": [0, 0]}\n"
      "{\"prompt\": \"p\", \"completions\": [\"a\", \"b\"], \"ranking\": [0, 1], \"ties\": [[1, 1]]}\n"
      "{\"chosen\": \"\\n\\nHuman: a\\n\\nAssistant: b\", \"rejected\": \"\\n\\nHuman: X\\n\\nAssistant: c\"}\n";
  const auto r = read_preferences_text(text, "mixed.jsonl");
  CHECK(r.records.size() == 1);
  CHECK(r.lines == 7);
  REQUIRE(r.skipped.size() == 6);
  CHECK(r.skipped[0].line == 3);
  CHECK(r.skipped[0].reason == "not valid JSON");
  CHECK(r.skipped[1].reason == "expected a JSON object, got array");
  CHECK(r.skipped[2].reason == "field \"chosen\" is number, expected a string");
  CHECK(r.skipped[3].reason == "ranking lists completion 0 twice");
  CHECK(r.skipped[4].reason.find("ties entry [1,1]") == 0);
  CHECK(r.skipped[5].line == 8);
  CHECK(r.skipped[5].reason.find("rejected does not start with chosen's prompt") == 0);
  try {
    (void)read_preferences_text(text, "mixed.jsonl", {.strict = true});
    FAIL("strict read did not throw");
  } catch (const rlhf::format_error& e) {
    CHECK(std::string(e.what()) == "mixed.jsonl:3: not valid JSON");
  }
}

TEST_CASE("a missing file is a format_error naming it") {
  CHECK_THROWS_AS(read_preferences("no/such/file.jsonl"), rlhf::format_error);
}

TEST_CASE("SFT prompt-completion, messages and text lines") {
  const auto r = read_sft_text(
      "{\"prompt\": \"Q: 2+2?\\nA:\", \"completion\": \" 4\"}\n"
      R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]})"
      "\n{\"text\": \"Once upon a time\"}\n"
      R"({"messages": [{"role": "user", "content": "Hi"}]})"
      "\n{\"prompt\": 1, \"completion\": \"x\"}\n",
      "sft.jsonl");
  REQUIRE(r.records.size() == 3);
  CHECK(r.records[0].segments.size() == 2);
  CHECK_FALSE(r.records[0].segments[0].train);
  CHECK(r.records[0].segments[1].train);
  CHECK(r.records[0].text() == "Q: 2+2?\nA: 4");
  CHECK(r.records[1].text() ==
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n");
  int trained = 0;
  for (const auto& s : r.records[1].segments)
    if (s.train) {
      ++trained;
      CHECK(s.text == "Hello<|im_end|>\n");
    }
  CHECK(trained == 1);
  CHECK(r.records[2].segments.size() == 1);
  CHECK(r.records[2].segments[0].train);
  REQUIRE(r.skipped.size() == 2);
  CHECK(r.skipped[0].reason == "messages has no assistant turn to train on");
  CHECK(r.skipped[1].reason == "field \"prompt\" is number, expected a string");
}

TEST_CASE("a byte-order mark and CRLF line ends are accepted") {
  const auto r = read_sft_text("\xEF\xBB\xBF{\"text\": \"a\"}\r\n{\"text\": \"b\"}\r\n", "bom.jsonl");
  REQUIRE(r.records.size() == 2);
  CHECK(r.records[1].text() == "b");
}
