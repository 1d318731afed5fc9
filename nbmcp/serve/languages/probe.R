# nbmcp's inspection probe for R kernels: answers list_variables, inspect_variable and read_rows with the
# JSON the Python probe (nbmcp/serve/languages/probe.py) returns, so tools and content conversion see no difference.
#
# nbmcp sends this file's text once per kernel (nbmcp/serve/languages/r.py), evaluated in a private
# environment whose parent is base R's, kept in options(nbmcp.probe =): it survives rm(list = ls()) and
# no user variable can mask the base functions it calls. It uses base R (utils for object.size, str and
# adist, which every R session attaches) and jsonlite (an IRkernel dependency); it touches dbplyr and DBI
# only for objects of theirs. Every read is bounded before it starts: pages subset O(page) elements, lazy
# SQL tables page with the database's LIMIT/OFFSET and count with a cap, never collecting.
#
# The answer goes out as a display_data of MIME (an IRkernel silent execute drops stdout) or, in an R
# kernel without IRkernel's display hook, as stdout text between START and END.

MIME <- "application/vnd.nbmcp.answer+json"
START <- "\002nbmcp-answer\002"
END <- "\003nbmcp-end\003"
COUNT_CAP <- 1000000
PROFILE_ROWS <- 100000
LAZY_PROFILE_ROWS <- 10000
HEAD_ROWS <- 10
TOP_VALUES <- 5
REPR_CHARS <- 100

json <- function(x) {
  jsonlite::toJSON(
    x,
    auto_unbox = TRUE, null = "null", na = "null", digits = NA, force = TRUE, json_verbatim = TRUE,
    POSIXt = "ISO8601", Date = "ISO8601", factor = "string", complex = "string", rownames = FALSE
  )
}

verbatim <- function(text) structure(as.character(text), class = "json")

emit <- function(text) {
  display <- getOption("jupyter.base_display_func")
  if (is.function(display)) {
    display(structure(list(as.character(text)), names = MIME), list(nbmcp = "answer"))
  } else {
    cat(START, text, END, sep = "")
  }
  invisible(NULL)
}

fail <- function(kind, message) {
  stop(structure(class = c(kind, "error", "condition"), list(message = message, call = NULL)))
}

error_text <- function(e) {
  kind <- class(e)[1]
  if (kind %in% c("simpleError", "error")) kind <- "Error"
  paste0(kind, ": ", conditionMessage(e))
}

answer <- function(op, args) {
  text <- tryCatch(
    suppressWarnings({
      a <- jsonlite::fromJSON(args, simplifyVector = FALSE)
      switch(op,
        list_variables = list_variables(a$limit),
        inspect_variable = inspect_variable(a$name, a$max_chars),
        read_rows = read_rows(a$name, a$offset, a$limit, unlist(a$columns)),
        fail("ValueError", paste("unknown operation", op))
      )
    }),
    error = function(e) json(list(error = error_text(e)))
  )
  emit(text)
}

# -- what a value is ------------------------------------------------------------------------------------

is_lazy <- function(x) inherits(x, "tbl_lazy")
is_frame <- function(x) is.data.frame(x) || is.matrix(x) || is_lazy(x)

frame_kind <- function(x) {
  if (is_lazy(x)) return("tbl_sql")
  if (inherits(x, "data.table")) return("data.table")
  if (inherits(x, "tbl_df")) return("tibble")
  if (is.matrix(x)) return("matrix")
  "data.frame"
}

type_name <- function(x) {
  if (is.matrix(x)) return(paste0("matrix<", typeof(x), ">"))
  class(x)[1]
}

column_names <- function(x) {
  if (is_lazy(x)) return(colnames(x))
  if (is.matrix(x)) {
    names <- colnames(x)
    return(if (is.null(names)) paste0("V", seq_len(ncol(x))) else names)
  }
  names(x)
}

shape <- function(x) {
  if (is_lazy(x)) return(list(NULL, length(colnames(x))))  # rows are counted only when asked, capped
  if (is_frame(x) || !is.null(dim(x))) return(as.list(dim(x)))
  NULL
}

cut_text <- function(text, n) if (nchar(text) > n) paste0(substr(text, 1, n), "...") else text

str_text <- function(x, ...) paste(trimws(utils::capture.output(utils::str(x, give.attr = FALSE, ...))), collapse = " ")

ABBREVIATIONS <- c(logical = "logi", integer = "int", double = "num", character = "chr", complex = "cplx", raw = "raw")

# what utils::str says of a plain vector ("num [1:100] 0.5 1 1.5 2 2.5 ..."), at a fraction of its cost
brief_vector <- function(x) {
  if (!length(x)) return(paste0(ABBREVIATIONS[[typeof(x)]], "(0)"))
  shown <- unname(x[seq_len(min(5, length(x)))])
  values <- if (is.character(shown)) encodeString(shown, quote = '"') else vapply(shown, format, "", digits = 3)
  dims <- if (length(x) == 1) "" else sprintf("[1:%d] ", length(x))
  paste0(if (is.null(names(x))) "" else "Named ", ABBREVIATIONS[[typeof(x)]], " ", dims, paste(values, collapse = " "), if (length(x) > 5) " ..." else "")
}

brief <- function(x) {
  if (is_frame(x)) {  # its class and shape are said beside it
    names <- column_names(x)
    shown <- paste(utils::head(names, 8), collapse = ", ")
    return(cut_text(paste0("columns ", shown, if (length(names) > 8) ", ..." else ""), REPR_CHARS))
  }
  if (is.function(x)) return(signature("function", x))
  if (is.environment(x)) return(paste0("<environment with ", length(ls(x)), " names>"))
  if (is.atomic(x) && all(names(attributes(x)) == "names") && typeof(x) %in% names(ABBREVIATIONS)) {
    return(cut_text(brief_vector(x), REPR_CHARS))
  }
  cut_text(str_text(x, max.level = 1, list.len = 3, vec.len = 3), REPR_CHARS)
}

entry <- function(name, x) {
  d <- list(name = name, type = type_name(x))
  s <- shape(x)
  if (!is.null(s)) d$shape <- s
  else if (is.environment(x)) d$len <- length(ls(x))
  else if (is.atomic(x) || is.list(x)) d$len <- length(x)
  d$repr <- brief(x)
  d
}

signature <- function(name, f) {
  a <- args(f)
  if (is.null(a)) return(paste0(name, "(...)"))
  text <- deparse(a)
  paste0(name, sub("^function ?", "", paste(trimws(text[-length(text)]), collapse = " ")))
}

user_names <- function() ls(globalenv())

resolve <- function(name) {
  if (!is.character(name) || length(name) != 1) fail("ValueError", "name must be one variable name")
  if (!exists(name, envir = globalenv(), inherits = FALSE)) {
    names <- user_names()
    close <- character()
    if (length(names)) {
      distance <- utils::adist(name, names, ignore.case = TRUE)[1, ]
      close <- names[order(distance)][sort(distance) <= max(2, nchar(name) %/% 3)][seq_len(min(5, length(names)))]
      close <- close[!is.na(close)]
    }
    hint <- if (length(close)) paste0(" Did you mean: ", paste(close, collapse = ", "), "?") else ""
    shown <- if (length(names)) {
      paste0(" The R session has ", length(names), " variables: ", paste(utils::head(names, 30), collapse = ", "),
             if (length(names) > 30) ", ..." else "", ".")
    } else " The R session has no variables."
    fail("NameError", paste0("object '", name, "' not found in the R session's global environment.", hint, shown))
  }
  get(name, envir = globalenv(), inherits = FALSE)
}

# -- pages ----------------------------------------------------------------------------------------------

check_columns <- function(available, columns) {
  unknown <- setdiff(columns, available)
  if (length(unknown)) {
    fail("KeyError", paste0("no column ", paste0("'", unknown, "'", collapse = ", "), "; the columns are: ",
                            paste(utils::head(available, 50), collapse = ", ")))
  }
}

rows_index <- function(n, offset, limit) {
  if (offset >= n) integer(0) else seq.int(offset + 1, min(n, offset + limit))
}

# A page as a plain data.frame of the page's elements only: .subset2 takes a column without copying it
# (and without data.table's or tibble's [ methods), then each column is subset to the page's rows.
page_frame <- function(x, offset, limit, columns) {
  available <- column_names(x)
  cols <- if (length(columns)) columns else available
  check_columns(available, cols)
  idx <- rows_index(nrow(x), offset, limit)
  if (is.matrix(x)) {
    values <- lapply(match(cols, available), function(j) x[idx, j])
  } else {
    values <- lapply(cols, function(c) .subset2(x, c)[idx])
  }
  names(values) <- cols
  if (is.data.frame(x) && .row_names_info(x) > 0 && !length(columns)) {
    values <- c(list("(row names)" = attr(x, "row.names")[idx]), values)
  }
  structure(values, class = "data.frame", row.names = .set_row_names(length(idx)))
}

lazy_sql <- function(x) as.character(dbplyr::sql_render(x))

lazy_page <- function(x, offset, limit, columns) {
  con <- dbplyr::remote_con(x)
  if (is.null(con)) fail("TypeError", "this lazy table has no database connection to page it with")
  available <- colnames(x)
  cols <- if (length(columns)) columns else available
  check_columns(available, cols)
  select <- paste(as.character(DBI::dbQuoteIdentifier(con, cols)), collapse = ", ")
  sql <- sprintf("SELECT %s FROM (%s) AS nbmcp_q LIMIT %.0f OFFSET %.0f", select, lazy_sql(x), limit, offset)
  DBI::dbGetQuery(con, sql)
}

lazy_count <- function(x) {
  sql <- sprintf(
    "SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM (%s) AS nbmcp_q LIMIT %.0f) AS nbmcp_c", lazy_sql(x), COUNT_CAP + 1
  )
  n <- as.numeric(DBI::dbGetQuery(dbplyr::remote_con(x), sql)[[1]][1])
  if (n > COUNT_CAP) list(total_rows = NULL, count_capped = TRUE, rows_at_least = COUNT_CAP + 1)
  else list(total_rows = n, count_capped = FALSE)
}

frame_page <- function(x, offset, limit, columns) {
  if (is_lazy(x)) lazy_page(x, offset, limit, columns) else page_frame(x, offset, limit, columns)
}

vector_page <- function(x, offset, limit) {
  idx <- rows_index(length(x), offset, limit)
  keys <- names(x)
  rows <- lapply(idx, function(i) {
    v <- x[[i]]
    value <- if (is.factor(v)) as.character(v)
    else if (is.atomic(v) && length(v) == 1) v
    else if (is.null(v)) NULL
    else brief(v)
    row <- list(index = i)  # R's own position, 1-based: x[[index]]
    if (!is.null(keys)) row$name <- keys[i]
    row["value"] <- list(value)  # a NULL value stays, as null
    row
  })
  list(rows = rows, columns = if (is.null(keys)) list("index", "value") else list("index", "name", "value"))
}

read_rows <- function(name, offset, limit, columns) {
  x <- resolve(name)
  if (is_frame(x)) {
    page <- frame_page(x, offset, limit, columns)
    counted <- if (is_lazy(x)) {
      if (nrow(page) > 0 && nrow(page) < limit) list(total_rows = offset + nrow(page), count_capped = FALSE)
      else lazy_count(x)
    } else list(total_rows = nrow(x), count_capped = FALSE)
    out <- c(list(columns = as.list(names(page)), rows = verbatim(json(page)), offset = offset), counted)
    return(json(out))
  }
  if (is.function(x) || is.environment(x) || is.null(x) || isS4(x) || !(is.atomic(x) || is.list(x))) {
    fail("TypeError", paste0(name, " is a ", type_name(x), ", not a table (data.frame, tibble, data.table, ",
                             "matrix, dbplyr table), a vector or a list"))
  }
  page <- vector_page(x, offset, limit)
  cols <- page$columns
  rows <- page$rows
  if (length(columns)) {
    check_columns(unlist(cols), columns)
    cols <- as.list(columns)
    rows <- lapply(rows, function(r) r[columns])
  }
  json(list(columns = cols, rows = rows, offset = offset, total_rows = length(x), count_capped = FALSE))
}

# -- descriptions -----------------------------------------------------------------------------------------

column_type <- function(v) if (is.list(v) && !is.data.frame(v)) "list" else class(v)[1]

scalar <- function(v) {
  if (inherits(v, c("Date", "POSIXt"))) return(format(v))
  if (is.factor(v)) return(as.character(v))
  v
}

column_profile <- function(name, v) {
  e <- list(name = name, dtype = column_type(v), nulls = sum(is.na(v)))
  if (is.list(v)) return(e)
  e$distinct <- length(unique(v))
  present <- v[!is.na(v)]
  if (!length(present)) return(e)
  if (is.numeric(present) || is.logical(present)) {
    e$min <- min(present)
    e$max <- max(present)
    e$mean <- mean(as.numeric(present))
  } else if (inherits(present, c("Date", "POSIXt"))) {
    e$min <- scalar(min(present))
    e$max <- scalar(max(present))
  } else if (is.character(present) || is.factor(present)) {
    text <- as.character(present)
    e$min <- min(text)
    e$max <- max(text)
    counts <- table(text)
    o <- order(-as.integer(counts), names(counts))[seq_len(min(TOP_VALUES, length(counts)))]
    e$top <- lapply(o, function(i) list(value = names(counts)[i], count = as.integer(counts[[i]])))
  }
  e
}

frame_profile <- function(x, total, capped) {
  sample <- if (is_lazy(x)) lazy_page(x, 0, LAZY_PROFILE_ROWS, NULL) else page_frame(x, 0, PROFILE_ROWS, NULL)
  sample[["(row names)"]] <- NULL
  profiled <- nrow(sample)
  out <- list(
    rows_profiled = profiled,
    sampled = capped || (!is.null(total) && total > profiled),
    columns = unname(Map(column_profile, names(sample), sample))
  )
  if (out$sampled) {
    of <- if (is.null(total)) paste("more than", format(COUNT_CAP, big.mark = ",")) else format(total, big.mark = ",")
    out$note <- paste0("computed on the first ", format(profiled, big.mark = ","), " rows of ", of,
                       "; distinct, min, max, mean and top values describe those rows only")
  }
  out
}

describe_frame <- function(d, x) {
  d$kind <- "frame"
  d$frame_kind <- frame_kind(x)
  head <- frame_page(x, 0, HEAD_ROWS, NULL)
  counted <- if (is_lazy(x)) lazy_count(x) else list(total_rows = nrow(x), count_capped = FALSE)
  d$shape <- list(counted$total_rows, length(column_names(x)))
  d <- c(d, counted)
  types <- if (is_lazy(x)) head else x
  names <- column_names(x)
  d$columns <- lapply(seq_along(names), function(j) {
    v <- if (is.matrix(types)) types[0, j] else .subset2(types, names[j])
    list(name = names[j], dtype = column_type(v))
  })
  d$memory_bytes <- if (is_lazy(x)) NULL else as.numeric(utils::object.size(x))
  if (is_lazy(x)) d$sql <- lazy_sql(x)
  d$head <- verbatim(json(head))
  profile <- tryCatch(frame_profile(x, counted$total_rows, isTRUE(counted$count_capped)), error = function(e) e)
  if (inherits(profile, "error")) d$profile_error <- error_text(profile) else d$profile <- profile
  d
}

inspect_variable <- function(name, max_chars) {
  x <- resolve(name)
  d <- entry(name, x)
  if (is_frame(x)) {
    d <- describe_frame(d, x)
  } else if (is.function(x)) {
    d$kind <- "callable"
    d$signature <- signature(name, x)
    where <- environmentName(environment(x))
    d$doc <- if (nzchar(where) && where != "R_GlobalEnv") paste("an R function of", where, "(help:", paste0("?", name, ")"))
    else cut_text(paste(utils::capture.output(print(x)), collapse = "\n"), max_chars)
  } else if (is.environment(x) || (is.list(x) && !is.null(names(x)))) {
    d$kind <- "mapping"
    d$keys <- as.list(utils::head(if (is.environment(x)) ls(x) else names(x), 50))
    d$repr <- cut_text(str_text(x, max.level = 1, list.len = 50), max_chars)
  } else {
    d$kind <- "value"
    d$dtype <- if (is.factor(x)) "factor" else typeof(x)
    shown <- if (is.atomic(x) && length(x) > 200) utils::head(x, 200) else x
    text <- paste(utils::capture.output(print(shown)), collapse = "\n")
    if (!identical(shown, x)) text <- paste0(text, "\n... (the first 200 of ", length(x), " values)")
    d$repr <- cut_text(text, max_chars)
    if (is.factor(x)) d$levels <- as.list(utils::head(levels(x), 50))
    extra <- setdiff(names(attributes(x)), c("names", "levels", "class"))
    if (length(extra)) d$attributes <- as.list(extra)
  }
  json(d)
}

list_variables <- function(limit) {
  names <- user_names()
  shown <- utils::head(names, limit)
  variables <- lapply(shown, function(name) {
    tryCatch(entry(name, get(name, envir = globalenv(), inherits = FALSE)),
             error = function(e) list(name = name, type = "?", repr = paste0("<failed: ", conditionMessage(e), ">")))
  })
  json(list(variables = variables, total = length(names)))
}
