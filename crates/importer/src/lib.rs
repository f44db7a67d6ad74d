//! IoT registration of decorated entries.
