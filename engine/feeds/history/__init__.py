"""History: Bybit trade archives and their columnar cache, kline files, recorded
sessions, replay sources cut at timer deadlines, and ``fetch``."""
