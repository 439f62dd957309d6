import logging

from appliance.logs import LogfmtFormatter


def _line(msg: str, *args) -> str:
    record = logging.LogRecord("appliance.daemon", logging.INFO, __file__, 1, msg, args, None)
    return LogfmtFormatter().format(record)


def test_one_logfmt_line_with_values_quoted_only_when_needed():
    line = _line("listening on %s", "127.0.0.1:50051")
    assert line.split(" ", 1)[1] == 'level=info logger=appliance.daemon msg="listening on 127.0.0.1:50051"'
    assert line.startswith("ts=") and line.split(" ", 1)[0].endswith("Z")
    assert _line("ready").endswith("msg=ready")


def test_quotes_newlines_and_empty_values_are_escaped():
    assert _line('say "hi"\nthen=go').endswith(r'msg="say \"hi\"\nthen=go"')
    assert _line("").endswith('msg=""')
