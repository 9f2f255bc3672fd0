BEGIN TRANSACTION;
CREATE TABLE audit (
	seq INTEGER NOT NULL, 
	request_id VARCHAR(63) NOT NULL, 
	at DATETIME NOT NULL, 
	actor VARCHAR(255) NOT NULL, 
	reason TEXT NOT NULL, 
	PRIMARY KEY (seq)
);
CREATE TABLE clusters (
	name VARCHAR(255) NOT NULL, 
	spec TEXT NOT NULL, 
	updated_at DATETIME NOT NULL, lease_owner VARCHAR(255), lease_until DATETIME, 
	PRIMARY KEY (name)
);
INSERT INTO "clusters" VALUES('prod','{"name":"prod","sets":[{"name":"workers","size":2}]}','2026-12-06 03:09:42.964811',NULL,NULL);
CREATE TABLE events (
	seq INTEGER NOT NULL, 
	request_id VARCHAR(63) NOT NULL, 
	at DATETIME NOT NULL, 
	message TEXT NOT NULL, 
	PRIMARY KEY (seq), 
	FOREIGN KEY(request_id) REFERENCES requests (id) ON DELETE CASCADE
);
INSERT INTO "events" VALUES(1,'legacy-0','2026-12-06 03:09:42.957103','request created');
INSERT INTO "events" VALUES(2,'legacy-1','2026-12-06 03:09:42.961053','request created');
INSERT INTO "events" VALUES(3,'legacy-2','2026-12-06 03:09:42.962283','request created');
INSERT INTO "events" VALUES(4,'legacy-2','2026-12-06 03:09:42.963717','deletion requested (was pending)');
CREATE TABLE request_labels (
	request_id VARCHAR(63) NOT NULL, 
	"key" VARCHAR(255) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY (request_id, "key"), 
	FOREIGN KEY(request_id) REFERENCES requests (id) ON DELETE CASCADE
);
INSERT INTO "request_labels" VALUES('legacy-0','role','worker');
INSERT INTO "request_labels" VALUES('legacy-0','n','0');
INSERT INTO "request_labels" VALUES('legacy-1','role','worker');
INSERT INTO "request_labels" VALUES('legacy-1','n','1');
INSERT INTO "request_labels" VALUES('legacy-2','role','worker');
INSERT INTO "request_labels" VALUES('legacy-2','n','2');
CREATE TABLE request_sets (
	name VARCHAR(255) NOT NULL, 
	document TEXT NOT NULL, 
	machine_config TEXT NOT NULL, 
	join_api_url TEXT, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	version INTEGER NOT NULL, 
	PRIMARY KEY (name)
);
INSERT INTO "request_sets" VALUES('pool','{"deleting":false,"fingerprint":"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff","join_options":{"mode":"documents"},"kind":"MachineRequestSet","machine_count":2,"template":{"arch":"amd64","extensions":[],"id":"legacy-9","kernel_args":[],"labels":{"n":"9","role":"worker"},"meta_values":[],"overlay":null,"provider":"fake","provider_data":{},"secure_boot":false,"talos_version":"v1.11.5"}}','fernet:gAAAAABrFNH2IcbU7jJHlLmRv48CDma3kDBNm1FYiRjwHwFsl1KD39KTt9GnWZUGFGaq2eIcmRU6OTLpDNFACSOUUA96EN5xCR8o3t8YUF0dXiPfhtFJqSM=','fernet:gAAAAABrFNH2-Ek2_q2nAyqBx9NBsVEO-GWfbbCeTGCSMaxhSMb7gvmQn4il7M708GVRaP3g4iUo7UukLiuL0exRLpjJXK_qHMv7WRPfCV6aZECdnQ-K9ZO11SBFwGBzn1CYlnVHkZLF','2026-02-01 00:00:00.000000','2026-02-01 00:00:00.000000',1);
CREATE TABLE requests (
	id VARCHAR(63) NOT NULL, 
	provider VARCHAR(255) NOT NULL, 
	stage VARCHAR(32) NOT NULL, 
	body TEXT NOT NULL, 
	fingerprint VARCHAR(64) NOT NULL, 
	machine_config TEXT NOT NULL, 
	join_api_url TEXT, 
	join_options TEXT, 
	step_index INTEGER NOT NULL, 
	step_name VARCHAR(255), 
	state TEXT NOT NULL, 
	error TEXT, 
	attempts INTEGER NOT NULL, 
	next_attempt_at DATETIME, 
	step_started_at DATETIME, 
	infra_id VARCHAR(255), 
	machine_uuid VARCHAR(64), 
	addresses TEXT NOT NULL, 
	marked_for_deletion BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	version INTEGER NOT NULL, 
	lease_owner VARCHAR(255), 
	lease_until DATETIME, 
	PRIMARY KEY (id)
);
INSERT INTO "requests" VALUES('legacy-0','fake','pending','{"arch":"amd64","extensions":[],"id":"legacy-0","kernel_args":[],"labels":{"n":"0","role":"worker"},"meta_values":[],"overlay":null,"provider":"fake","provider_data":{},"secure_boot":false,"talos_version":"v1.11.5"}','8c44736991e820031758f8b8f4a86bf4182036382507bdee53e7639f66f45cad','fernet:gAAAAABrFNH288wPObEOQaaQx5YqQEK8jUc8v2HbcA1t31MSAGrwzWT6g6iGWan0D0UU-KM_cyayiiC9EWyrtTTjCLSEtUJzl_uoFxmCEGwsYV3ChcM3Ekg1KWUzFPr4KlK_FPSFI6hw','fernet:gAAAAABrFNH2ebbtVlhqQSUOm1uCzzWoaG7zyzSs5DdIhYO1LpPFc0Wl40saCnW8TeCilz_wI1rcb5ldiFXtgRY6qmu1pPFaCy9RjNZVGuwDsi-4tRQN9y08KMb-9dQ4nN-pp31U2H5W','{"events_sink":"[fdae:41e4:649b:9303::1]:8090","kmsg_log":"tcp://[fdae:41e4:649b:9303::1]:8092","mode":"documents"}',0,NULL,'{}',NULL,0,NULL,NULL,NULL,NULL,'[]',0,'2026-12-06 03:09:42.957103','2026-12-06 03:09:42.957103',1,NULL,NULL);
INSERT INTO "requests" VALUES('legacy-1','fake','pending','{"arch":"amd64","extensions":[],"id":"legacy-1","kernel_args":[],"labels":{"n":"1","role":"worker"},"meta_values":[],"overlay":null,"provider":"fake","provider_data":{},"secure_boot":false,"talos_version":"v1.11.5"}','f06edfb690ee870f3b7c018d7187b1c1e7162c02aa063f508bc733f7e8b8e8f4','fernet:gAAAAABrFNH203ccOBi75L0FiZTNXLF3V_v1YkjDvqhd5-rnfohr9Z_05GDPis6Hjuglx6R3vuZCF5rUQdnNEHdNSKdP_Xir_EgPTh1GtbdWhH0aa9ZrMGOgnOl2fYUijIDSdOs5gKm-','fernet:gAAAAABrFNH2qjgRDfD8A2jV5FuN08YgxkDOnKjcnCf5D-gnTrjwKnIThDU9RIC6lgpNSIeOHmkrwF2cUb_XIvq3bu6Cd0AZ-S69ndAWf1On3_IdwGThu9d5KjanpTPFOrqrl7S8zK5m','{"events_sink":"[fdae:41e4:649b:9303::1]:8090","kmsg_log":"tcp://[fdae:41e4:649b:9303::1]:8092","mode":"documents"}',0,NULL,'{}',NULL,0,NULL,NULL,NULL,NULL,'[]',0,'2026-12-06 03:09:42.961053','2026-12-06 03:09:42.961053',1,NULL,NULL);
INSERT INTO "requests" VALUES('legacy-2','fake','deprovisioning','{"arch":"amd64","extensions":[],"id":"legacy-2","kernel_args":[],"labels":{"n":"2","role":"worker"},"meta_values":[],"overlay":null,"provider":"fake","provider_data":{},"secure_boot":false,"talos_version":"v1.11.5"}','2854517a1480c82df2d325817445f832be72cd777a9f14c044c46b93ecf7a135','fernet:gAAAAABrFNH2vWWImT89GedfBtWXNJBO5oaUTqJj91UG1eLBsk3KncK6Lk0xEPmb_RYzBwneyfSacJGUnstoZ6iYOsWA362ynaJGsiI-CawWc3QGZCbWJh0nDVWfgbIRMTqbWVbtSJp3','fernet:gAAAAABrFNH2jcgEjgJWO0IYoVfuFAUhodvRnvFDGqJ0dM4nmll2dln7IP6CZrmVK_-jwNKkk4uQ-_7_jKytvDaJLGMFrF16ecBL2ZNyykkS7dI-BfkdtkPMnScu3P75lDaLJ5PbUm4H','{"events_sink":"[fdae:41e4:649b:9303::1]:8090","kmsg_log":"tcp://[fdae:41e4:649b:9303::1]:8092","mode":"documents"}',0,NULL,'{}',NULL,0,NULL,NULL,NULL,NULL,'[]',0,'2026-12-06 03:09:42.962283','2026-12-06 03:09:42.963717',2,NULL,NULL);
CREATE TABLE schema_version (
	version INTEGER NOT NULL, 
	name VARCHAR(100) NOT NULL, 
	applied_at DATETIME NOT NULL, 
	PRIMARY KEY (version)
);
INSERT INTO "schema_version" VALUES(1,'initial schema','2026-12-06 03:09:42.944633');
INSERT INTO "schema_version" VALUES(2,'request sets table','2026-12-06 03:09:42.944633');
INSERT INTO "schema_version" VALUES(3,'cluster leases','2026-12-06 03:09:42.944633');
CREATE INDEX ix_requests_provider ON requests (provider);
CREATE INDEX ix_requests_stage ON requests (stage);
CREATE INDEX ix_request_labels_key_value ON request_labels ("key", value);
CREATE INDEX ix_events_request_id ON events (request_id);
COMMIT;
