// tests/io/safetensors_test.cpp — the safetensors reader against the committed corpus (every
// bad file rejected with its rule, every good file accepted), the writer against the reference
// writer's bytes, bitwise round trips, model load/save by name and their errors.
#include <rlhf/concepts.hpp>
#include <rlhf/io/safetensors.hpp>
#include <rlhf/rng.hpp>

#include <doctest/doctest.h>

#include "support/named_tensors.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace fs = std::filesystem;

namespace {

const std::string corpus = std::string(RLHF_TEST_DATA_DIR) + "/safetensors";

/// A toy Trainable model with GPT-2 tensor names and shapes.
template <class T>
using toy_model = rlhf::test::named_tensors<T>;
static_assert(rlhf::Trainable<toy_model<float>>);

template <class T>
toy_model<T> gpt2_like(std::uint64_t seed) {
  toy_model<T> m;
  m.add("wte.weight", {11, 4}, seed);
  m.add("wpe.weight", {8, 4}, seed + 1);
  for (int layer = 0; layer < 2; ++layer) {
    const std::string h = "h." + std::to_string(layer) + ".";
    m.add(h + "ln_1.weight", {4}, seed + 10);
    m.add(h + "ln_1.bias", {4}, seed + 11);
    m.add(h + "attn.c_attn.weight", {4, 12}, seed + 12 + static_cast<std::uint64_t>(layer));
    m.add(h + "attn.c_attn.bias", {12}, seed + 14);
    m.add(h + "attn.c_proj.weight", {4, 4}, seed + 15);
    m.add(h + "mlp.c_fc.weight", {4, 16}, seed + 16);
  }
  m.add("ln_f.weight", {4}, seed + 20);
  return m;
}

std::string temp_dir() {
  const fs::path dir = fs::temp_directory_path() / ("rlhf_safetensors_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir.string();
}

std::string exception_text(const std::string& path) {
  try {
    (void)rlhf::safetensors_file::read(path);
  } catch (const rlhf::format_error& e) {
    return e.what();
  }
  return "(accepted)";
}

std::vector<std::byte> bytes_of(std::string_view s) {
  std::vector<std::byte> b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}

}  // namespace

TEST_CASE("safetensors: every file of the bad corpus is rejected with its rule and its file name") {
  std::size_t files = 0;
  std::vector<std::string> rules_seen;
  for (const auto& entry : fs::directory_iterator(corpus + "/bad")) {
    const std::string path = entry.path().string();
    const std::string file = entry.path().filename().string();
    const std::string rule = file.substr(0, file.find('.'));
    CAPTURE(file);
    const std::string what = exception_text(path);
    CHECK(what.find("rlhf::safetensors: " + path + ": " + rule + ": ") == 0);
    if (std::find(rules_seen.begin(), rules_seen.end(), rule) == rules_seen.end()) rules_seen.push_back(rule);
    ++files;
  }
  CHECK(files >= 30);
  // One or more files for every rule of the reference reader.
  for (const char* rule : {"HeaderTooSmall", "HeaderTooLarge", "InvalidHeaderLength", "InvalidHeader",
                           "InvalidHeaderDeserialization", "InvalidOffset", "ValidationOverflow", "MisalignedSlice",
                           "TensorInvalidInfo", "MetadataIncompleteBuffer"}) {
    CAPTURE(rule);
    CHECK(std::find(rules_seen.begin(), rules_seen.end(), rule) != rules_seen.end());
  }
}

TEST_CASE("safetensors: the messages say what is wrong") {
  const std::string bad = corpus + "/bad/";
  CHECK(exception_text(bad + "InvalidHeaderDeserialization.duplicate_tensor.safetensors").find("duplicate key 'a'") !=
        std::string::npos);
  CHECK(exception_text(bad + "InvalidHeaderDeserialization.duplicate_metadata_key.safetensors")
            .find("duplicate __metadata__ key 'k'") != std::string::npos);
  CHECK(exception_text(bad + "InvalidHeaderDeserialization.unknown_dtype.safetensors").find("unknown dtype 'F128'") !=
        std::string::npos);
  CHECK(exception_text(bad + "InvalidOffset.gap.safetensors")
            .find("tensor 'b' has data_offsets [8, 12] but must start at 4") != std::string::npos);
  CHECK(exception_text(bad + "MetadataIncompleteBuffer.trailing_bytes.safetensors")
            .find("the tensors cover 8 bytes but the byte buffer has 9") != std::string::npos);
}

TEST_CASE("safetensors: every file of the good corpus parses") {
  std::size_t files = 0;
  for (const auto& entry : fs::directory_iterator(corpus + "/good")) {
    CAPTURE(entry.path().string());
    CHECK_NOTHROW((void)rlhf::safetensors_file::read(entry.path().string()));
    ++files;
  }
  CHECK(files >= 8);

  const auto f = rlhf::safetensors_file::read(corpus + "/good/gpt2_names.safetensors");
  REQUIRE(f.tensors().size() == 3);
  CHECK(f.metadata().at("format") == "pt");
  const auto* w = f.find("h.0.attn.c_attn.weight");
  REQUIRE(w != nullptr);
  CHECK(w->dtype == rlhf::safetensors_dtype::f32);
  CHECK(w->shape == std::vector<std::uint64_t>{2, 3});
  CHECK(w->elements() == 6);
  float x;
  std::memcpy(&x, w->bytes.data() + 4 * 5, 4);
  CHECK(x == 5.0f);
  CHECK(f.find("nope") == nullptr);

  const auto s = rlhf::safetensors_file::read(corpus + "/good/scalar_and_empty.safetensors");
  CHECK(s.find("s")->shape.empty());
  CHECK(s.find("s")->elements() == 1);
  CHECK(s.find("e")->bytes.empty());
  CHECK(rlhf::safetensors_file::read(corpus + "/good/metadata_null.safetensors").metadata().empty());
  CHECK(rlhf::safetensors_file::read(corpus + "/good/every_dtype.safetensors").find("f6")->dtype ==
        rlhf::safetensors_dtype::f6_e2m3);
}

TEST_CASE("safetensors: the writer produces the reference writer's bytes") {
  const auto reference = rlhf::read_file(corpus + "/good/reference_writer.safetensors");
  const auto parsed = rlhf::safetensors_file::parse(reference, "reference_writer");
  std::vector<rlhf::safetensors_entry> entries;
  // Given in another order than the file's: the writer sorts.
  for (auto it = parsed.tensors().rbegin(); it != parsed.tensors().rend(); ++it)
    entries.push_back({it->name, it->dtype, it->shape, it->bytes});
  const auto ours = rlhf::serialize_safetensors(entries, parsed.metadata());
  CHECK(parsed.metadata().at("note") == "quote \" and \\ and \xc3\xa9");
  CHECK(ours == reference);
}

TEST_CASE("safetensors: round trips are bitwise, metadata included") {
  rlhf::rng gen{{.seed = 7}};
  std::vector<float> a(37);
  for (auto& x : a) x = gen.normal<float>();
  a[3] = std::numeric_limits<float>::quiet_NaN();
  a[4] = -0.0f;
  a[5] = std::numeric_limits<float>::denorm_min();
  std::vector<double> b{1e-300, -std::numeric_limits<double>::infinity()};
  std::vector<std::int64_t> c{-1, 1LL << 62};
  std::vector<rlhf::safetensors_entry> entries{
      {"a", rlhf::safetensors_dtype::f32, {37}, std::as_bytes(std::span(a))},
      {"b", rlhf::safetensors_dtype::f64, {1, 2}, std::as_bytes(std::span(b))},
      {"c", rlhf::safetensors_dtype::i64, {2}, std::as_bytes(std::span(c))},
      {"empty", rlhf::safetensors_dtype::f32, {0, 3}, {}},
  };
  const rlhf::safetensors_metadata meta{{"step", "12"}, {"text", "line\nbreak \"q\" \x01"}};
  const auto bytes = rlhf::serialize_safetensors(entries, meta);
  const auto f = rlhf::safetensors_file::parse(bytes);
  CHECK((8 + f.header_bytes()) % 8 == 0);  // data start aligned like the reference writer's
  CHECK(f.metadata() == meta);
  for (const auto& e : entries) {
    const auto* t = f.find(e.name);
    REQUIRE(t != nullptr);
    CHECK(t->dtype == e.dtype);
    CHECK(t->shape == e.shape);
    CHECK(std::equal(t->bytes.begin(), t->bytes.end(), e.bytes.begin(), e.bytes.end()));
  }
  // Re-serialising the parsed file gives the same bytes.
  std::vector<rlhf::safetensors_entry> again;
  for (const auto& t : f.tensors()) again.push_back({t.name, t.dtype, t.shape, t.bytes});
  CHECK(rlhf::serialize_safetensors(again, f.metadata()) == bytes);
}

TEST_CASE("safetensors: every truncation and every single-byte change of a valid file parses or throws format_error") {
  const auto good = rlhf::read_file(corpus + "/good/gpt2_names.safetensors");
  for (std::size_t n = 0; n < good.size(); ++n) {
    CAPTURE(n);
    CHECK_THROWS_AS((void)rlhf::safetensors_file::parse(std::span(good).first(n)), rlhf::format_error);
  }
  std::vector<std::byte> changed = good;
  std::size_t accepted = 0;
  for (std::size_t i = 0; i < good.size(); ++i) {
    for (const int v : {0x00, 0x22, 0x2c, 0x5b, 0x7d, 0xff, 0x31}) {
      changed[i] = static_cast<std::byte>(v);
      try {
        (void)rlhf::safetensors_file::parse(changed);
        ++accepted;
      } catch (const rlhf::format_error&) {
      }
      changed[i] = good[i];
    }
  }
  CHECK(accepted > 0);  // changes inside the data or the metadata value stay valid
}

TEST_CASE("safetensors: header limit and leading whitespace") {
  const auto good = rlhf::read_file(corpus + "/good/gpt2_names.safetensors");
  const auto f = rlhf::safetensors_file::parse(good);
  CHECK_THROWS_WITH_AS((void)rlhf::safetensors_file::parse(good, "x", {.max_header_bytes = f.header_bytes() - 1}),
                       doctest::Contains("rlhf::safetensors: x: HeaderTooLarge"), rlhf::format_error);
  CHECK(rlhf::safetensors_file::read(corpus + "/good/leading_whitespace.safetensors").tensors().size() == 1);
}

TEST_CASE("safetensors: writer errors") {
  std::vector<float> a(2);
  const auto bytes = std::as_bytes(std::span(a));
  std::vector<rlhf::safetensors_entry> dup{{"a", rlhf::safetensors_dtype::f32, {2}, bytes},
                                           {"a", rlhf::safetensors_dtype::f32, {2}, bytes}};
  CHECK_THROWS_WITH_AS((void)rlhf::serialize_safetensors(dup), "rlhf::serialize_safetensors(): duplicate tensor name 'a'",
                       rlhf::invalid_argument);
  std::vector<rlhf::safetensors_entry> reserved{{"__metadata__", rlhf::safetensors_dtype::f32, {2}, bytes}};
  CHECK_THROWS_AS((void)rlhf::serialize_safetensors(reserved), rlhf::invalid_argument);
  std::vector<rlhf::safetensors_entry> size{{"a", rlhf::safetensors_dtype::f32, {3}, bytes}};
  CHECK_THROWS_WITH_AS((void)rlhf::serialize_safetensors(size),
                       "rlhf::serialize_safetensors(): tensor 'a' (F32, 3 elements) has 8 bytes", rlhf::invalid_argument);
  std::vector<rlhf::safetensors_entry> utf{{"\xff", rlhf::safetensors_dtype::f32, {2}, bytes}};
  CHECK_THROWS_AS((void)rlhf::serialize_safetensors(utf), rlhf::invalid_argument);
}

TEST_CASE_TEMPLATE("safetensors: a model round-trips by GPT-2 name, bitwise", T, float, double) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/model.safetensors";
  auto saved = gpt2_like<T>(1);
  rlhf::save_safetensors(path, saved, {{"format", "pt"}});
  auto loaded = gpt2_like<T>(99);  // other values, same names and shapes
  const auto report = rlhf::load_safetensors(path, loaded);
  CHECK(report.loaded.size() == saved.tensors.size());
  CHECK(report.missing.empty());
  CHECK(report.unexpected.empty());
  CHECK(report.metadata.at("format") == "pt");
  for (std::size_t i = 0; i < saved.tensors.size(); ++i) {
    CAPTURE(saved.tensors[i].name);
    CHECK(std::memcmp(saved.tensors[i].value.data(), loaded.tensors[i].value.data(),
                      saved.tensors[i].value.size() * sizeof(T)) == 0);
  }
  const auto file = rlhf::safetensors_file::read(path);
  CHECK(file.find("h.1.attn.c_attn.weight")->shape == std::vector<std::uint64_t>{4, 12});
  CHECK(file.find("wte.weight")->dtype == (sizeof(T) == 4 ? rlhf::safetensors_dtype::f32 : rlhf::safetensors_dtype::f64));
  // No temporary file is left behind.
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++entries;
  CHECK(entries == 1);
  fs::remove_all(dir);
}

TEST_CASE("safetensors: loading checks names, shapes and dtypes before changing anything") {
  const std::string dir = temp_dir();
  const std::string path = dir + "/model.safetensors";
  auto saved = gpt2_like<float>(1);
  rlhf::save_safetensors(path, saved);
  const auto file = rlhf::safetensors_file::read(path);

  SUBCASE("a missing tensor (a new head) is an error unless allowed") {
    auto model = gpt2_like<float>(2);
    model.add("score.weight", {4}, 5);
    const auto before = model.tensors;
    CHECK_THROWS_WITH_AS(rlhf::load_safetensors(file, model),
                         std::string("rlhf::load_safetensors(): " + path + ": missing tensor 'score.weight'").c_str(),
                         rlhf::format_error);
    CHECK(model.tensors[0].value == before[0].value);  // nothing loaded
    auto r = rlhf::load_safetensors(file, model, {.may_be_missing = [](std::string_view n) { return n.starts_with("score."); }});
    CHECK(r.missing == std::vector<std::string>{"score.weight"});
    CHECK(model.tensors.back().value == before.back().value);
    CHECK(model.tensors[0].value == saved.tensors[0].value);
    auto model2 = gpt2_like<float>(2);
    model2.add("other", {1}, 1);
    CHECK(rlhf::load_safetensors(file, model2, {.allow_missing = true}).missing.size() == 1);
  }
  SUBCASE("an unexpected tensor is an error unless allowed") {
    auto model = gpt2_like<float>(2);
    model.tensors.pop_back();  // no ln_f.weight in the model
    CHECK_THROWS_WITH_AS(rlhf::load_safetensors(file, model),
                         doctest::Contains("unexpected tensor 'ln_f.weight'"), rlhf::format_error);
    CHECK(rlhf::load_safetensors(file, model, {.allow_unexpected = true}).unexpected ==
          std::vector<std::string>{"ln_f.weight"});
  }
  SUBCASE("a shape mismatch") {
    auto model = gpt2_like<float>(2);
    model.tensors[0].shape = {4, 11};
    CHECK_THROWS_WITH_AS(rlhf::load_safetensors(file, model),
                         doctest::Contains("tensor 'wte.weight' has shape [11, 4] but the parameter has [4, 11] (44 values)"),
                         rlhf::format_error);
  }
  SUBCASE("a dtype mismatch: F32 into double needs widen") {
    auto model = gpt2_like<double>(2);
    CHECK_THROWS_WITH_AS(rlhf::load_safetensors(file, model),
                         doctest::Contains("tensor 'wte.weight' is F32 but the parameter is F64"),
                         rlhf::format_error);
    rlhf::load_safetensors(file, model, {.widen = true});
    CHECK(model.tensors[0].value[3] == static_cast<double>(saved.tensors[0].value[3]));
  }
  fs::remove_all(dir);
}

TEST_CASE("safetensors: F16 and BF16 widen exactly into float") {
  const auto f = rlhf::safetensors_file::read(corpus + "/good/half_types.safetensors");
  toy_model<float> m;
  m.tensors.push_back({"h", {2}, {0, 0}, {0, 0}});
  m.tensors.push_back({"b", {2}, {0, 0}, {0, 0}});
  CHECK_THROWS_WITH_AS(rlhf::load_safetensors(f, m), doctest::Contains("is F16 but the parameter is F32 (set widen"),
                       rlhf::format_error);
  rlhf::load_safetensors(f, m, {.widen = true});
  CHECK(m.tensors[0].value == std::vector<float>{1.0f, 0x1p-24f});  // 1 and the smallest subnormal
  CHECK(m.tensors[1].value == std::vector<float>{1.5f, -2.0f});
  // Every finite half converts exactly (checked through a round trip of the bit pattern).
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float x = rlhf::detail::half_to_float(static_cast<std::uint16_t>(h));
    const std::uint32_t e = (h >> 10) & 0x1F;
    if (e == 0x1F) {
      CHECK(((h & 0x3FF) == 0 ? std::isinf(x) : std::isnan(x)));
      continue;
    }
    const double mantissa = e == 0 ? (h & 0x3FF) / 1024.0 : 1.0 + (h & 0x3FF) / 1024.0;
    const double expected = ((h & 0x8000) ? -1.0 : 1.0) * std::ldexp(mantissa, e == 0 ? -14 : static_cast<int>(e) - 15);
    if (static_cast<double>(x) != expected) {
      FAIL("half " << h << " -> " << x << ", expected " << expected);
    }
  }
}

TEST_CASE("safetensors: require_finite and prefixes") {
  std::vector<float> v{1.0f, std::numeric_limits<float>::quiet_NaN()};
  std::vector<float> w{2.0f, 3.0f};
  std::vector<rlhf::safetensors_entry> entries{{"x", rlhf::safetensors_dtype::f32, {2}, std::as_bytes(std::span(v))},
                                               {"value.x", rlhf::safetensors_dtype::f32, {2}, std::as_bytes(std::span(w))}};
  const auto bytes = rlhf::serialize_safetensors(entries);
  const auto f = rlhf::safetensors_file::parse(bytes, "mem");
  toy_model<float> m;
  m.tensors.push_back({"x", {2}, {0, 0}, {0, 0}});
  CHECK_THROWS_WITH_AS(rlhf::load_safetensors(f, m, {.allow_unexpected = true, .require_finite = true}),
                       "rlhf::load_safetensors(): mem: tensor 'x' holds a non-finite value at element 1",
                       rlhf::format_error);
  rlhf::load_safetensors(f, m, {.prefix = "value."});
  CHECK(m.tensors[0].value == w);
}

TEST_CASE("write_file_atomic: replaces a file, errors name the path") {
  const std::string dir = temp_dir();
  const std::string path = dir + "/f.bin";
  rlhf::write_file_atomic(path, bytes_of("first"));
  rlhf::write_file_atomic(path, bytes_of("second, longer"));
  CHECK(rlhf::read_file(path) == bytes_of("second, longer"));
  rlhf::write_file_atomic(path, {});
  CHECK(rlhf::read_file(path).empty());
  CHECK_THROWS_WITH_AS(rlhf::write_file_atomic(dir + "/no/such/dir/f", bytes_of("x")),
                       doctest::Contains("rlhf::write_file_atomic(): cannot create '"), rlhf::error);
  CHECK_THROWS_WITH_AS((void)rlhf::read_file(dir + "/missing"), doctest::Contains("rlhf::read_file(): cannot open '"),
                       rlhf::error);
  fs::remove_all(dir);
}
