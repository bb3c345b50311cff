// examples/instructgpt/svg.hpp — the two kinds of figure the demo's report draws, as plain SVG:
// line charts (reward, KL and β over PPO steps) and overlaid histograms (reward-model scores per
// stage, the Llama 2 figure). No dependencies; deterministic output (fixed number formatting).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace instructgpt::svg {

struct series {
  std::string name;
  std::vector<double> x;
  std::vector<double> y;
};

inline const char* colour(std::size_t i) {
  static const char* const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
  return palette[i % std::size(palette)];
}

inline std::string num(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.4g", v);
  return buffer;
}

inline std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

struct frame {
  double width = 640, height = 360, left = 64, right = 150, top = 36, bottom = 48;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;

  double px(double x) const { return left + (x - x0) / (x1 - x0) * (width - left - right); }
  double py(double y) const { return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom); }
};

inline void pad_range(double& lo, double& hi) {
  if (!(hi > lo)) {
    lo -= 0.5;
    hi += 0.5;
  }
  const double pad = 0.05 * (hi - lo);
  lo -= pad;
  hi += pad;
}

inline std::string axes(const frame& f, const std::string& title, const std::string& xlabel, const std::string& ylabel) {
  std::string s;
  s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(f.width) + "\" height=\"" + num(f.height) +
       "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s += "<text x=\"" + num(f.width / 2) + "\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">" + escape(title) + "</text>\n";
  s += "<line x1=\"" + num(f.left) + "\" y1=\"" + num(f.height - f.bottom) + "\" x2=\"" + num(f.width - f.right) +
       "\" y2=\"" + num(f.height - f.bottom) + "\" stroke=\"black\"/>\n";
  s += "<line x1=\"" + num(f.left) + "\" y1=\"" + num(f.top) + "\" x2=\"" + num(f.left) + "\" y2=\"" +
       num(f.height - f.bottom) + "\" stroke=\"black\"/>\n";
  for (int i = 0; i <= 4; ++i) {
    const double xv = f.x0 + (f.x1 - f.x0) * i / 4.0;
    const double yv = f.y0 + (f.y1 - f.y0) * i / 4.0;
    s += "<text x=\"" + num(f.px(xv)) + "\" y=\"" + num(f.height - f.bottom + 16) + "\" text-anchor=\"middle\">" +
         num(xv) + "</text>\n";
    s += "<text x=\"" + num(f.left - 6) + "\" y=\"" + num(f.py(yv) + 4) + "\" text-anchor=\"end\">" + num(yv) + "</text>\n";
    s += "<line x1=\"" + num(f.left) + "\" y1=\"" + num(f.py(yv)) + "\" x2=\"" + num(f.width - f.right) + "\" y2=\"" +
         num(f.py(yv)) + "\" stroke=\"#ddd\"/>\n";
  }
  s += "<text x=\"" + num((f.left + f.width - f.right) / 2) + "\" y=\"" + num(f.height - 10) +
       "\" text-anchor=\"middle\">" + escape(xlabel) + "</text>\n";
  s += "<text transform=\"translate(14 " + num((f.top + f.height - f.bottom) / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">" + escape(ylabel) + "</text>\n";
  return s;
}

inline std::string legend(const frame& f, const std::vector<std::string>& names) {
  std::string s;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const double y = f.top + 10 + 18.0 * static_cast<double>(i);
    s += "<rect x=\"" + num(f.width - f.right + 12) + "\" y=\"" + num(y - 9) + "\" width=\"12\" height=\"10\" fill=\"" +
         colour(i) + "\"/>\n";
    s += "<text x=\"" + num(f.width - f.right + 30) + "\" y=\"" + num(y) + "\">" + escape(names[i]) + "</text>\n";
  }
  return s;
}

/// Line chart of one or more series sharing axes.
inline std::string line_chart(const std::string& title, const std::string& xlabel, const std::string& ylabel,
                              const std::vector<series>& lines) {
  frame f;
  f.x0 = f.y0 = INFINITY;
  f.x1 = f.y1 = -INFINITY;
  for (const auto& l : lines) {
    for (double v : l.x) f.x0 = std::min(f.x0, v), f.x1 = std::max(f.x1, v);
    for (double v : l.y)
      if (std::isfinite(v)) f.y0 = std::min(f.y0, v), f.y1 = std::max(f.y1, v);
  }
  if (!std::isfinite(f.x0)) f.x0 = 0, f.x1 = 1;
  if (!std::isfinite(f.y0)) f.y0 = 0, f.y1 = 1;
  if (!(f.x1 > f.x0)) f.x1 = f.x0 + 1;
  pad_range(f.y0, f.y1);
  std::string s = axes(f, title, xlabel, ylabel);
  std::vector<std::string> names;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string points;
    for (std::size_t k = 0; k < lines[i].x.size() && k < lines[i].y.size(); ++k)
      if (std::isfinite(lines[i].y[k])) points += num(f.px(lines[i].x[k])) + "," + num(f.py(lines[i].y[k])) + " ";
    s += "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" + std::string(colour(i)) + "\" points=\"" + points + "\"/>\n";
    names.push_back(lines[i].name);
  }
  return s + legend(f, names) + "</svg>\n";
}

/// Overlaid histograms (outlined bars) of several samples over common bins.
inline std::string histogram(const std::string& title, const std::string& xlabel,
                             const std::vector<std::pair<std::string, std::vector<double>>>& samples, int bins = 24) {
  frame f;
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& [name, values] : samples)
    for (double v : values)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (!(hi > lo)) lo -= 0.5, hi += 0.5;
  std::vector<std::vector<double>> density(samples.size(), std::vector<double>(static_cast<std::size_t>(bins), 0.0));
  double top = 0;
  const double width = (hi - lo) / bins;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const auto& values = samples[i].second;
    for (double v : values) {
      if (!std::isfinite(v)) continue;
      const int b = std::clamp(static_cast<int>((v - lo) / width), 0, bins - 1);
      density[i][static_cast<std::size_t>(b)] += 1.0 / (static_cast<double>(values.size()) * width);
    }
    for (double d : density[i]) top = std::max(top, d);
  }
  f.x0 = lo, f.x1 = hi, f.y0 = 0, f.y1 = top > 0 ? top * 1.05 : 1;
  std::string s = axes(f, title, xlabel, "density");
  std::vector<std::string> names;
  for (std::size_t i = 0; i < samples.size(); ++i) {
    std::string points = num(f.px(lo)) + "," + num(f.py(0)) + " ";
    for (int b = 0; b < bins; ++b) {
      const double y = f.py(density[i][static_cast<std::size_t>(b)]);
      points += num(f.px(lo + b * width)) + "," + num(y) + " " + num(f.px(lo + (b + 1) * width)) + "," + num(y) + " ";
    }
    points += num(f.px(hi)) + "," + num(f.py(0));
    s += "<polyline fill=\"" + std::string(colour(i)) + "\" fill-opacity=\"0.15\" stroke-width=\"2\" stroke=\"" +
         colour(i) + "\" points=\"" + points + "\"/>\n";
    names.push_back(samples[i].first);
  }
  return s + legend(f, names) + "</svg>\n";
}

}  // namespace instructgpt::svg
