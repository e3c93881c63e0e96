// The load generator (issue: `zcr load`). Placeholder until it lands.
import ZeroCopyReactor

public enum LoadModule {}
