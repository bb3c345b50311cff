// rlhf/io/atomic_file.hpp — whole-file reads and crash-safe writes (POSIX).
//
// write_file_atomic(path, bytes): the bytes go to a new temporary file in the same directory
// ("<path>.tmp.<pid>.<n>"), which is fsync'ed, renamed over `path`, and then the directory is
// fsync'ed, so that after a crash `path` holds either the old or the new content, never a
// mixture or a truncated file (rename is atomic; the directory fsync makes it durable). A
// failure removes the temporary file and throws rlhf::error naming the path and the cause.
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/error.hpp>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace rlhf {

namespace detail {
[[noreturn]] inline void io_fail(const char* function, const std::string& what, const std::string& path, int err) {
  RLHF_THROW(error(std::string(function) + ": cannot " + what + " '" + path + "': " + std::strerror(err)));
}
inline std::string parent_directory(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}
}  // namespace detail

/// Replace the file at `path` with `bytes`, atomically and durably (see the top of this file).
inline void write_file_atomic(const std::string& path, std::span<const std::byte> bytes) {
  constexpr const char* function = "rlhf::write_file_atomic()";
  static std::atomic<std::uint64_t> counter{0};
  const std::string temp = path + ".tmp." + std::to_string(static_cast<long long>(::getpid())) + "." +
                           std::to_string(counter.fetch_add(1));
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) detail::io_fail(function, "create", temp, errno);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ::ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      ::close(fd);
      ::unlink(temp.c_str());
      detail::io_fail(function, "write", temp, err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(temp.c_str());
    detail::io_fail(function, "fsync", temp, err);
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    detail::io_fail(function, "close", temp, err);
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    detail::io_fail(function, "rename onto", path, err);
  }
  const std::string dir = detail::parent_directory(path);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) detail::io_fail(function, "open the directory", dir, errno);
  if (::fsync(dfd) != 0) {
    const int err = errno;
    ::close(dfd);
    detail::io_fail(function, "fsync the directory", dir, err);
  }
  ::close(dfd);
}

/// The whole content of the file at `path`. Throws rlhf::error when it cannot be read.
[[nodiscard]] inline std::vector<std::byte> read_file(const std::string& path) {
  constexpr const char* function = "rlhf::read_file()";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) detail::io_fail(function, "open", path, errno);
  struct ::stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    detail::io_fail(function, "stat", path, err);
  }
  std::vector<std::byte> out(static_cast<std::size_t>(st.st_size > 0 ? st.st_size : 0));
  std::size_t done = 0;
  for (;;) {
    if (done == out.size()) out.resize(out.size() + 65536);  // the file may have grown
    const ::ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      detail::io_fail(function, "read", path, err);
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  out.resize(done);
  return out;
}

}  // namespace rlhf
