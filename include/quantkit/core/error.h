// Error types of quantkit. Every failure caused by bad input throws one of these with a message
// that names the argument, what was expected and what was given.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace quantkit {

/// Base class of every exception quantkit throws on bad input or unsupported requests.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A tensor has the wrong shape or rank for the operation.
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// A dtype is not supported for the operation, or two dtypes do not combine.
class DTypeError : public Error {
 public:
  using Error::Error;
};

/// An argument has a value outside its valid domain (non-positive scale, NaN, bad range...).
class ValueError : public Error {
 public:
  using Error::Error;
};

/// A file is malformed, truncated or inconsistent with itself.
class FormatError : public Error {
 public:
  using Error::Error;
};

/// An operating-system level I/O failure (open, stat, mmap, write).
class IoError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace detail

}  // namespace quantkit

/// Throws `ErrorType` with the streamed message parts when `cond` is false.
#define QK_CHECK(cond, ErrorType, ...)                                     \
  do {                                                                     \
    if (!(cond)) throw ErrorType(::quantkit::detail::concat(__VA_ARGS__)); \
  } while (0)
