// Tests of rlhf/train/metrics.hpp: the metrics container, JSONL lines, the log file and the
// progress line, and the numerical_error diagnostic.
#include <rlhf/train/metrics.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

using rlhf::train::metrics;

TEST_CASE("metrics: set keeps insertion order and replaces; at() throws naming the metric") {
  metrics m;
  m.set("objective/kl", 1.5);
  m.set("lr", 1e-5);
  m.set("objective/kl", 2.5);
  REQUIRE(m.size() == 2);
  CHECK(m.items()[0].first == "objective/kl");
  CHECK(m.at("objective/kl") == 2.5);
  CHECK_FALSE(m.get("missing"));
  CHECK_THROWS_WITH_AS((void)m.at("missing"), "rlhf::train::metrics::at(): no metric named 'missing'",
                       rlhf::invalid_argument);
}

TEST_CASE("to_json_line: round-trip numbers, escaped names, NaN and infinities as Python writes them") {
  metrics m;
  m.set("objective/kl", 0.1);
  m.set("quote\"name", 3);
  m.set("nan", std::numeric_limits<double>::quiet_NaN());
  m.set("inf", -std::numeric_limits<double>::infinity());
  CHECK(rlhf::train::to_json_line(7, m) ==
        "{\"step\": 7, \"objective/kl\": 0.1, \"quote\\\"name\": 3, \"nan\": \"NaN\", \"inf\": \"-Infinity\"}");
  metrics third;
  third.set("x", 1.0 / 3.0);
  const auto line = rlhf::train::to_json_line(1, third);
  const auto value = line.substr(line.find("\"x\": ") + 5);
  CHECK(std::strtod(value.c_str(), nullptr) == 1.0 / 3.0);
}

TEST_CASE("metrics_log: one JSON line per step in the file; a progress line every N steps off a terminal") {
  const std::string path = "metrics_log_test.jsonl";
  std::FILE* progress = std::tmpfile();
  REQUIRE(progress != nullptr);
  {
    rlhf::train::metrics_log log(path, {.print_every = 2, .progress_keys = {"loss", "accuracy"}, .progress = progress});
    for (std::uint64_t step = 1; step <= 4; ++step) {
      metrics m;
      m.set("loss", 1.0 / static_cast<double>(step));
      m.set("other", 0.0);
      log(step, m);
    }
  }
  std::ifstream in(path);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    CHECK(line.rfind("{\"step\": " + std::to_string(lines) + ", \"loss\": ", 0) == 0);
  }
  CHECK(lines == 4);
  std::remove(path.c_str());
  std::rewind(progress);
  char buf[256] = {};
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, progress);
  std::fclose(progress);
  CHECK(std::string(buf, n) == "step 2 | loss 0.5\nstep 4 | loss 0.25\n");
  CHECK_THROWS_AS(rlhf::train::metrics_log("no-such-directory/x.jsonl"), rlhf::error);
}

TEST_CASE("numerical_error: the diagnostic names the trainer, the step, the tensor and the value") {
  const rlhf::train::numerical_event e{12, "loss/value", std::numeric_limits<double>::quiet_NaN()};
  const auto err = rlhf::train::to_error("rlhf::train::ppo_trainer", e);
  CHECK(std::string(err.what()) == "rlhf::train::ppo_trainer: step 12: non-finite loss/value (nan)");
  CHECK(err.step() == 12);
  CHECK(err.tensor() == "loss/value");
  CHECK(std::isnan(err.value()));
  const rlhf::error& base = err;  // an rlhf::error like every library failure
  CHECK(std::string(base.what()).find("step 12") != std::string::npos);
}
